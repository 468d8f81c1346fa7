/**
 * The documentation tells the truth at the edges. Each test here pins one
 * claim a user would rely on (README.md, docs/*.md, the OpenAPI document's
 * `x-contract-choices`, a code comment) against what the code does, and
 * fails where the two disagree.
 *
 * Runs against the real Redis under a fresh key prefix per platform
 * (test/helpers/platform.ts), never ./models.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { REQUEST_TIME_LIMIT_MS, keys as redisKeys } from '@infer/contract';
import { WorkerHeartbeat } from '@infer/fleet';
import { buildOpenApi } from '../apps/gateway/src/openapi.js';
import { REPO_ROOT, TEST_REDIS_URL, startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

const read = (...parts: string[]) => readFileSync(path.join(REPO_ROOT, ...parts), 'utf8');
const features = () => new Array(64).fill(0.5);
const ADMIN_KEY = 'docs-truth-admin';

/** The rows of the README's configuration table: variable → its four cells. */
function readmeConfigRows(): Map<string, { usedBy: string; meaning: string; default: string }> {
  const text = read('README.md');
  const section = text.slice(text.indexOf('## Configuration'), text.indexOf('## Running more workers'));
  const rows = new Map<string, { usedBy: string; meaning: string; default: string }>();
  for (const line of section.split('\n')) {
    const m = /^\| `([A-Z][A-Z0-9_]+)` \| ([^|]+) \| (.+) \| ([^|]+) \|$/.exec(line);
    if (m) rows.set(m[1]!, { usedBy: m[2]!.trim(), meaning: m[3]!.trim(), default: m[4]!.trim() });
  }
  return rows;
}

/** docs/api.md's error table: code → the "when" cells of its rows, by status. */
function apiErrorRows(): Array<{ code: string; status: number; when: string }> {
  const text = read('docs', 'api.md');
  const section = text.slice(text.indexOf('The codes the gateway answers with:'), text.indexOf('`inference_failed` is never an HTTP answer'));
  const rows: Array<{ code: string; status: number; when: string }> = [];
  for (const line of section.split('\n')) {
    const m = /^\| `([a-z_]+)` \| (\d{3}) \| (.+) \|$/.exec(line);
    if (m) rows.push({ code: m[1]!, status: Number(m[2]), when: m[3]! });
  }
  return rows;
}

describe('docs: what they say of the edges holds', function () {
  this.timeout(60_000);

  describe('against a running platform', () => {
    let p: TestPlatform;
    before(async () => {
      p = await startPlatform({ env: { ADMIN_API_KEYS: `ops:${ADMIN_KEY}` } });
    });
    after(async () => {
      await p?.close();
    });

    // docs/api.md ("GET /readyz"): a version a live worker is still loading reads `ready: false` there, and its
    // jobs and batches are queued (202), as the Version states table and FleetView.served say.
    it('docs/api.md GET /readyz: the jobs of a version /readyz calls not ready answer 503 unavailable', async () => {
      const q = await startPlatform({ worker: false });
      const redis = new Redis(TEST_REDIS_URL);
      // A live worker (its heartbeat, under this run's own prefix) that serves mlp v1 and is still loading v2.
      const heartbeat = new WorkerHeartbeat(redis, q.prefix, 'docs-truth-loading', () => [
        { model: 'mlp', version: '1', state: 'ready' },
        { model: 'mlp', version: '2', state: 'loading' },
        { model: 'ocr-cls', version: '1', state: 'ready' },
      ]);
      try {
        await heartbeat.start();
        await q.gateway.catalog.refresh();
        const ready = (await (await fetch(`${q.baseUrl}/readyz`)).json()) as { models: Record<string, Record<string, { ready: boolean }>> };
        expect(ready.models.mlp!['2'], '/readyz calls mlp v2 not ready').to.deep.include({ ready: false });

        const job = await q.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: 2, input: { features: features() } }) });
        const batch = await q.api('/v1/batches', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: 2, items: [{ input: { features: features() } }] }) });
        // What docs/api.md promises for a version /readyz calls not ready (this one is loading on a live worker).
        const api = read('docs', 'api.md');
        const readyz = api.slice(api.indexOf('### `GET /readyz`'), api.indexOf('### `GET /metrics`'));
        const claim = /A version that is not ready[^.]*\./.exec(readyz.replace(/\s+/g, ' '))?.[0] ?? '';
        const promised = /503/.test(claim) && !/loading/.test(claim) ? 503 : 202;
        expect({ job: job.status, batch: batch.status }, `docs/api.md: "${claim}"`).to.deep.equal({ job: promised, batch: promised });
      } finally {
        await heartbeat.stop();
        redis.disconnect();
        await q.close();
      }
    });

    // apps/gateway/src/openapi.ts, CONTRACT_CHOICES (served as info.x-contract-choices): the status it names for an
    // unknown field in a rollout body is the one the route answers (400, as docs/api.md and test/openapi.test.ts say).
    it('OpenAPI x-contract-choices: an unknown field in a rollout body answers the status the choice names', async () => {
      const choices = (buildOpenApi().info as { 'x-contract-choices': string[] })['x-contract-choices'];
      const sentence = choices.find((s) => s.startsWith('Unknown top-level fields'));
      expect(sentence, 'the choice about unknown fields').to.be.a('string');
      const general = Number(/rejected with (\d{3})/.exec(sentence!)?.[1]);
      const exception = /except in `POST \/v1\/models\/\{name\}\/rollouts`[^.]*?(\d{3}) `invalid_input`/.exec(sentence!);
      const claimed = exception ? Number(exception[1]) : general;
      const res = await p.api('/v1/models/mlp/rollouts', {
        method: 'POST',
        key: ADMIN_KEY,
        body: JSON.stringify({ version: 1, steps: [100], step_seconds: 60, extra: true }),
      });
      const problem = (await res.json()) as { code: string };
      expect(problem.code).to.equal('invalid_input');
      expect(res.status, `x-contract-choices: "${sentence}"`).to.equal(claimed);
    });

    // docs/api.md's error table, the one a client branches on, names the admin bodies (PUT …/routing, POST …/rollouts)
    // among those answering 413 (at 64 KiB, whatever MAX_BODY_BYTES is), 415 and 400 `invalid_json`.
    it("docs/api.md's error table covers the admin routes' body errors (64 KiB 413, 415, 400 invalid_json)", async () => {
      const rows = apiErrorRows();
      const row = (code: string, status: number) => rows.find((r) => r.code === code && r.status === status)!.when;
      const missing: string[] = [];

      const big = await p.api('/v1/models/mlp/routing', { method: 'PUT', key: ADMIN_KEY, body: JSON.stringify({ weights: null, pad: 'x'.repeat(70_000) }) });
      const bigProblem = (await big.json()) as { code: string; detail: string };
      expect(big.status).to.equal(413);
      expect(bigProblem.code).to.equal('payload_too_large');
      expect(70_000).to.be.below(p.config.maxBodyBytes);
      const limit = Number(/limit of (\d+) bytes/.exec(bigProblem.detail)?.[1]);
      if (!row('payload_too_large', 413).includes(`${limit / 1024} KiB`)) missing.push(`413 payload_too_large: an admin body over ${limit / 1024} KiB (MAX_BODY_BYTES is ${p.config.maxBodyBytes})`);

      const coded = await p.api('/v1/models/mlp/routing', { method: 'PUT', key: ADMIN_KEY, headers: { 'content-encoding': 'compress' }, body: JSON.stringify({ weights: null }) });
      expect(coded.status).to.equal(415);
      expect(((await coded.json()) as { code: string }).code).to.equal('unsupported_media_type');
      if (!/routing|rollout|admin|lifecycle|every route/i.test(row('unsupported_media_type', 415))) missing.push('415 unsupported_media_type: an admin body with another Content-Encoding');

      const broken = await p.api('/v1/models/mlp/rollouts', { method: 'POST', key: ADMIN_KEY, body: '{"version": 1,' });
      expect(broken.status).to.equal(400);
      expect(((await broken.json()) as { code: string }).code).to.equal('invalid_json');
      if (!/routing|rollout|admin|lifecycle/i.test(row('invalid_json', 400))) missing.push('400 invalid_json: an admin body that is not JSON');

      expect(missing, "answers docs/api.md's error table does not list").to.deep.equal([]);
    });

    // docs/batches.md ("Keys"): the keys it names are the keys a batch is stored under (the id as a hash tag,
    // `<prefix>:batch:{<id>}`, @infer/contract keys(); as docs/architecture.md's `{p}:batch:{b}`).
    it('docs/batches.md: a batch is stored under the keys docs/batches.md names', async () => {
      const res = await p.api('/v1/batches', { method: 'POST', body: JSON.stringify({ model: 'mlp', items: [{ custom_id: 'a', input: { features: features() } }] }) });
      expect(res.status).to.equal(202);
      const { id } = (await res.json()) as { id: string };
      const redis = new Redis(TEST_REDIS_URL);
      try {
        await waitUntil(async () => ((await (await p.api(`/v1/batches/${id}`)).json()) as { status: string }).status === 'completed', 20_000, 'the batch to complete');
        const doc = read('docs', 'batches.md');
        const record = /Per batch: `<prefix>:batch:<id>`/.test(doc) ? `${p.prefix}:batch:${id}` : undefined;
        const results = /`<prefix>:batch:<id>:results`/.test(doc) ? `${p.prefix}:batch:${id}:results` : undefined;
        expect(await redis.exists(redisKeys(p.prefix).batch(id)), 'the record, where @infer/contract keeps it').to.equal(1);
        for (const key of [record, results]) {
          if (key) expect(await redis.exists(key), `${key}, as docs/batches.md names it`).to.equal(1);
        }
      } finally {
        redis.disconnect();
      }
    });
  });

  // README.md ("Deploying with Docker Compose"): every variable of the configuration table passes through
  // docker-compose.yml from the shell or `.env`, but those the README names as set by the compose file.
  it('README: every configuration variable but those it names passes through docker-compose.yml from the shell', () => {
    const readme = read('README.md');
    const sentence = /compose file decides for\s+its own layout:([\s\S]*?)\.\s+`MODEL_REPOSITORY`/.exec(readme);
    expect(sentence, 'the README sentence').to.not.equal(null);
    const exceptions = new Set([...sentence![1]!.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1]!));
    const compose = read('docker-compose.yml');
    const fixed = [...readmeConfigRows().keys()].filter((v) => !exceptions.has(v) && !new RegExp(`^\\s+${v}: \\$\\{${v}[:}]`, 'm').test(compose));
    expect(fixed, 'variables docker-compose.yml sets to a fixed value, which the README says pass through').to.deep.equal([]);
  });

  // docs/sdk.md ("Batches"): the upload paragraph, the one an SDK user reads, says that every gateway cuts a
  // request that has not arrived whole after REQUEST_TIME_LIMIT_MS (5 minutes, 408, nothing kept).
  it("docs/sdk.md: the upload paragraph states the gateway's time limit on an upload", () => {
    const sdk = read('docs', 'sdk.md');
    const start = sdk.indexOf('`upload` reads its source');
    const paragraph = sdk.slice(start, sdk.indexOf('\n\n', start));
    expect(paragraph).to.include('bounded by');
    const minutes = REQUEST_TIME_LIMIT_MS / 60_000;
    expect(paragraph, `docs/sdk.md's upload paragraph should name the ${minutes}-minute limit (408)`).to.match(new RegExp(`${minutes} minutes|408`));
  });

  // A comment naming the package a type lives in names the package that declares it (the webhook delivery
  // types are declared in @infer/contract; @infer/webhooks only re-exports them).
  it('code comments that say which package a type lives in name the package that declares it', () => {
    const wrong: string[] = [];
    for (const top of ['apps', 'packages', 'scripts']) {
      for (const e of readdirSync(path.join(REPO_ROOT, top), { recursive: true, withFileTypes: true })) {
        const file = path.join(e.parentPath, e.name);
        if (!e.isFile() || !file.endsWith('.ts') || file.includes(`${path.sep}dist${path.sep}`) || file.includes('node_modules')) continue;
        // Comments joined across their line breaks (` * `, `// `).
        const text = readFileSync(file, 'utf8').replace(/\n\s*(?:\*|\/\/)\s*/g, ' ');
        for (const m of text.matchAll(/`([A-Z][A-Za-z]+)`[^`(]{0,40}\(@infer\/([a-z-]+)\)/g)) {
          const [type, pkg] = [m[1]!, m[2]!];
          const src = path.join(REPO_ROOT, 'packages', pkg, 'src');
          const declared = readdirSync(src, { recursive: true, withFileTypes: true })
            .filter((f) => f.isFile() && f.name.endsWith('.ts'))
            .some((f) => new RegExp(`(?:interface|class|type|enum) ${type}\\b(?!\\s*[,}])`).test(readFileSync(path.join(f.parentPath, f.name), 'utf8').replace(/export (?:type )?\{[^}]*\}[^;]*;/g, '')));
          if (!declared) wrong.push(`${path.relative(REPO_ROOT, file)}: \`${type}\` (@infer/${pkg})`);
        }
      }
    }
    expect(wrong, 'types a comment places in a package that does not declare them').to.deep.equal([]);
  });
});
