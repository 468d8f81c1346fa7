import net from 'node:net';
import { expect } from 'chai';
import type { Batch } from '@infer/contract';
import { mlpFeatures, toNdjson } from './helpers/batches.js';
import { OTHER_TENANT_KEY, TEST_KEY, startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * Batch uploads "step aside" while the gateway serves interactive requests (InteractiveRequests): each
 * piece of an upload waits up to MAX_YIELD_MS (1 s) while any /v1/jobs request is in flight. A job
 * request counts from the moment its headers arrive until it is answered, including the time its body
 * is still arriving. So one tenant that opens `POST /v1/jobs` and sends its body slowly (or not at all:
 * the gateway waits up to the 5-minute request limit) slows every other tenant's upload on the gateway
 * to one piece a second: a 2.6 MB NDJSON upload that takes half a second takes about a minute, and a
 * large one is cut at 5 minutes with 408. A request idle on its socket uses no CPU; it must not count
 * as interactive work (docs/batches.md: uploads pause while the gateway "is serving" interactive
 * requests, so that parsing does not delay them).
 */
describe('security: a job request whose body trickles in does not stall other tenants’ uploads', function () {
  this.timeout(150_000);
  let p: TestPlatform;
  let trickle: net.Socket | undefined;

  /** Tenant A's request ends: its socket closed, and the gateway told so. */
  const release = async (): Promise<void> => {
    if (!trickle || trickle.destroyed) return;
    const closed = new Promise((resolve) => trickle!.once('close', resolve));
    trickle.destroy();
    await closed;
  };

  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await release();
    await p?.close();
  });

  const body = toNdjson(Array.from({ length: 2000 }, (_, i) => ({ custom_id: `r${i}`, input: { features: mlpFeatures(i) } })));

  const upload = () => {
    const started = performance.now();
    return p
      .api('/v1/batches?model=mlp', { method: 'POST', key: OTHER_TENANT_KEY, headers: { 'content-type': 'application/x-ndjson' }, body })
      .then(async (res) => ({ status: res.status, batch: (await res.json()) as Batch, ms: performance.now() - started }));
  };

  it('an NDJSON upload of another tenant completes as fast with a slow job request open as without', async () => {
    const alone = await upload();
    expect(alone.status, 'control upload').to.equal(202);

    // Tenant A: a job request whose body never finishes arriving.
    const port = Number(new URL(p.baseUrl).port);
    trickle = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => trickle!.once('connect', resolve).once('error', reject));
    const head =
      `POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TEST_KEY}\r\n` +
      `Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"model":"mlp","input":`;
    await new Promise<void>((resolve, reject) => trickle!.write(head, (err) => (err ? reject(err) : resolve())));

    // Tenant B uploads the same file again; allow it ten times what it took alone, and at least 10 s.
    const budgetMs = Math.max(10_000, alone.ms * 10);
    const during = upload();
    let timer: NodeJS.Timeout | undefined;
    const inTime = await Promise.race([during.then(() => true), new Promise<false>((resolve) => (timer = setTimeout(resolve, budgetMs, false)))]);
    clearTimeout(timer);
    // Either way, end tenant A's request: the upload then goes on at full speed and ends cleanly.
    await release();
    const done = await during;
    expect(done.status).to.equal(202);
    expect(done.batch.request_counts.total).to.equal(2000);
    expect(inTime, `alone: ${alone.ms.toFixed(0)} ms; beside a trickling job request: not done after ${budgetMs} ms (done ${done.ms.toFixed(0)} ms after it started, once that request ended)`).to.equal(true);
  });
});
