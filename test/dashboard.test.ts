import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { chromium, type BrowserContext } from 'playwright-core';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { REPO_ROOT, SHIPPED_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/** Debian's chromium package (`apt-get install chromium`; .ci/run installs it). */
const CHROMIUM = '/usr/bin/chromium';
const ADMIN_KEY = 'admin-key-dashboard-test';
/** Where the test leaves its screenshot (gitignored). */
export const TEST_OUTPUT = path.join(REPO_ROOT, 'test-output');

/**
 * Start Chromium as a person's browser would be, headless, with Basic
 * credentials for the dashboard's challenge. Nothing leaves this machine:
 * every host name but the loopback's fails to resolve, and the page's
 * requests to anywhere but the gateway are aborted (bull-board's page links
 * a web font).
 */
async function launchBrowser(userDataDir: string): Promise<BrowserContext> {
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
    ],
    httpCredentials: { username: 'ops', password: ADMIN_KEY },
    viewport: { width: 1400, height: 900 },
  });
}

describe('queue dashboard in a browser (bull-board at /admin/queues)', function () {
  this.timeout(90_000);
  let p: TestPlatform;
  let browser: BrowserContext | undefined;
  let userDataDir: string;
  const marker = `dashboard-marker-${Date.now()}`;
  const jobIds: string[] = [];

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      console.warn(`      skipped: no browser at ${CHROMIUM} (apt-get install chromium; .ci/run tries to)`);
      this.skip();
    }
    userDataDir = mkdtempSync(path.join(tmpdir(), 'infer-dashboard-chromium-'));
    // Only a missing browser skips: one that is installed and fails to start fails the test (after() removes the folder).
    browser = await launchBrowser(userDataDir);
    // No worker: the jobs stay queued, as envelopes in the interactive queue.
    p = await startPlatform({ worker: false, env: { ADMIN_API_KEYS: `ops:${ADMIN_KEY}` } });
    const features = new Array(64).fill(0.25);
    for (let i = 0; i < 3; i++) {
      const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features }, metadata: { marker, n: i } }) });
      expect(res.status).to.equal(202);
      jobIds.push(((await res.json()) as { id: string }).id);
    }
    await browser.route(/.*/, (route) => (route.request().url().startsWith(p.baseUrl) ? route.continue() : route.abort()));
  });

  after(async () => {
    await browser?.close();
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
    await p?.close();
  });

  it('lists every model version\'s queues, opens one, and shows an envelope\'s jobs', async () => {
    const page = await browser!.newPage();
    const res = await page.goto(`${p.baseUrl}/admin/queues`);
    expect(res?.status()).to.equal(200);
    for (const name of ['infer.mlp.v2', 'bulk.mlp.v2', 'infer.mlp.v1', 'infer.ocr-cls.v1', 'webhooks']) {
      await page.getByText(name, { exact: true }).first().waitFor({ timeout: 20_000 });
    }

    // The interactive queue of mlp v2, its waiting envelopes: each one's data lists the jobs it carries.
    await page.goto(`${p.baseUrl}/admin/queues/queue/infer.mlp.v2?status=waiting`);
    await page.getByText('jobData').first().waitFor({ timeout: 20_000 });
    // bull-board's JSON view folds what is nested deeper than two levels: unfold each job (and its metadata).
    for (let i = 0; i < 20; i++) {
      const fold = page.locator('[aria-label="expand JSON"]').first();
      if ((await fold.count()) === 0) break;
      await fold.click();
    }
    await page.getByText(marker).first().waitFor({ timeout: 20_000 });
    const text = await page.locator('body').innerText();
    expect(text).to.contain('jobs:');
    expect(text).to.contain('tenant-a');
    expect(jobIds.some((id) => text.includes(id)), 'a submitted job id on the page').to.equal(true);

    mkdirSync(TEST_OUTPUT, { recursive: true });
    await page.screenshot({ path: path.join(TEST_OUTPUT, 'dashboard.png'), fullPage: true });
    await page.close();
  });

  it('asks a browser for credentials, and refuses a tenant\'s API key', async () => {
    const anonymous = await fetch(`${p.baseUrl}/admin/queues`);
    expect(anonymous.status).to.equal(401);
    expect(anonymous.headers.get('www-authenticate')).to.match(/^Basic realm="infer admin"/);
    const tenant = await p.api('/admin/queues');
    expect(tenant.status).to.equal(403);
    expect(((await tenant.json()) as { code: string }).code).to.equal('forbidden');
    const bearer = await fetch(`${p.baseUrl}/admin/queues/api/queues`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    expect(bearer.status).to.equal(200);
  });
});

describe('queue dashboard follows the live model repository', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let repo: TempModelRepo;

  /** The queues bull-board's API lists now, by name, with whether each is read-only. */
  const listed = async (): Promise<Map<string, boolean>> => {
    const res = await fetch(`${p.baseUrl}/admin/queues/api/queues`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    expect(res.status).to.equal(200);
    const body = (await res.json()) as { queues: Array<{ name: string; readOnlyMode: boolean }> };
    return new Map(body.queues.map((q) => [q.name, q.readOnlyMode]));
  };

  before(async () => {
    // A throwaway repository holding a real copy of mlp v1 only, looked at every 0.2 s. A worker too: it lets go of a
    // removed version once drained (the gateway leaves that to the worker it shares the repository with).
    repo = tempModelRepo({});
    mkdirSync(path.join(repo.root, 'mlp'));
    cpSync(path.join(SHIPPED_MODELS, 'mlp', 'config.json'), path.join(repo.root, 'mlp', 'config.json'));
    cpSync(path.join(SHIPPED_MODELS, 'mlp', '1'), path.join(repo.root, 'mlp', '1'), { recursive: true, dereference: true });
    p = await startPlatform({ models: repo.root, env: { ADMIN_API_KEYS: `ops:${ADMIN_KEY}`, MODEL_POLL_SECONDS: '0.2' } });
  });

  after(async () => {
    await p?.close();
    repo?.remove();
  });

  it('shows a version added after start, drops a removed one, and stays read-only', async () => {
    // Opened once before any change: the board is built with what the gateway knew at the time.
    expect([...(await listed()).keys()]).to.deep.equal(['infer.mlp.v1', 'bulk.mlp.v1', 'webhooks']);

    cpSync(path.join(SHIPPED_MODELS, 'mlp', '2'), path.join(repo.root, 'mlp', '2'), { recursive: true, dereference: true });
    await waitUntil(() => p.gateway.models.find('mlp', '2'), 20_000, 'the gateway to load mlp v2');
    const added = await listed();
    expect([...added.keys()]).to.deep.equal(['infer.mlp.v1', 'bulk.mlp.v1', 'infer.mlp.v2', 'bulk.mlp.v2', 'webhooks']);
    expect([...added.values()].every((readOnly) => readOnly), 'every queue read-only').to.equal(true);

    // Removed from the folder: drained (nothing is queued for it) and released, then gone from the board.
    rmSync(path.join(repo.root, 'mlp', '1'), { recursive: true, force: true });
    await waitUntil(() => !p.gateway.models.find('mlp', '1'), 20_000, 'the gateway to release mlp v1');
    expect([...(await listed()).keys()]).to.deep.equal(['infer.mlp.v2', 'bulk.mlp.v2', 'webhooks']);

    // bull-board refuses an action on a queue added later (405, read-only), as on every other.
    const retry = await fetch(`${p.baseUrl}/admin/queues/api/queues/infer.mlp.v2/retry/failed`, { method: 'PUT', headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    expect(retry.status).to.equal(405);
  });
});
