import { expect } from 'chai';
import { loadConfig } from '@infer/config';
import { createLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { deletePrefix, SHIPPED_MODELS, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';
import { LogCapture } from './helpers/log-capture.js';


const KEY = 'sk-logs-levels-9d2f';
const features = () => new Array(64).fill(0.25);

/**
 * What the normal paths log: the README promises one info line per job a worker runs and nothing else per
 * request; clients' mistakes (4xx), client aborts, replays, retried webhooks and batches are the platform
 * working, not warnings or errors an operator would be paged for.
 */
describe('normal traffic logs nothing at warn or above, and one info line per job run', function () {
  this.timeout(90_000);
  const prefix = uniquePrefix('rvlvl');
  const gatewayLog = new LogCapture();
  const workerLog = new LogCapture();
  let gateway: Gateway;
  let worker: InferenceWorker;
  let base: string;
  let receiver: WebhookReceiver;

  before(async () => {
    // First delivery 500 (a retry), then 204.
    receiver = await startWebhookReceiver((n) => (n === 1 ? 500 : 204));
    const config = loadConfig({
      REDIS_URL: TEST_REDIS_URL,
      MODEL_REPOSITORY: SHIPPED_MODELS,
      QUEUE_PREFIX: prefix,
      API_KEYS: `acme:${KEY}`,
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WEBHOOK_RETRY_DELAYS_MS: '50,50',
      WORKER_METRICS_PORT: '0',
      MAX_BODY_BYTES: '200000',
    });
    gateway = await createGateway(config, createLogger({ level: 'info', name: 'gateway', destination: gatewayLog }));
    worker = await createWorker(config, createLogger({ level: 'info', name: 'worker', destination: workerLog }), { models: gateway.models });
    await gateway.catalog.refresh();
    base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;
  });

  after(async () => {
    await worker?.close();
    await gateway?.close();
    await receiver?.close();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it('client errors, aborts, replays, a retried webhook and a batch: no warn/error line; one "job ended" per job', async () => {
    const api = (path: string, init: RequestInit = {}) =>
      fetch(base + path, { ...init, headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...init.headers } });
    const ids: string[] = [];
    // Jobs that run; one with a webhook whose first delivery is retried.
    for (let i = 0; i < 3; i++) {
      const res = await api('/v1/jobs', {
        method: 'POST',
        headers: { prefer: 'wait=10', 'idempotency-key': `k-${i}` },
        body: JSON.stringify({ model: 'mlp', input: { features: features() }, ...(i === 0 ? { webhook: receiver.url } : {}) }),
      });
      const job = (await res.json()) as { id: string; status: string };
      expect(job.status).to.equal('succeeded');
      ids.push(job.id);
    }
    // A replay of the same key: no new job.
    const replay = await api('/v1/jobs', { method: 'POST', headers: { 'idempotency-key': 'k-0' }, body: JSON.stringify({ model: 'mlp', input: { features: features() } }) });
    expect(replay.status).to.be.oneOf([200, 202]);
    await replay.text();
    // Client mistakes.
    const statuses: number[] = [];
    for (const [path, init] of [
      ['/v1/jobs', { method: 'POST', headers: { authorization: 'Bearer nope' }, body: '{}' }],
      ['/v1/jobs', { method: 'POST', body: '{"model":' }],
      ['/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'x'.repeat(5000), input: {} }) }],
      ['/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: [1, 2] } }) }],
      ['/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: new Array(30_000).fill(0.5) } }) }],
      ['/v1/jobs/doesnotexist', {}],
      ['/v1/jobs/doesnotexist/cancel', { method: 'POST' }],
      [`/v1/jobs/${ids[1]}/cancel`, { method: 'POST' }],
      ['/v1/batches/nope', {}],
      ['/v1/nothing-here', {}],
      ['/v1/models/nope', {}],
    ] as Array<[string, RequestInit]>) {
      const res = await api(path, init);
      statuses.push(res.status);
      await res.text();
    }
    expect(statuses.every((s) => s >= 400 && s < 500), String(statuses)).to.equal(true);
    // A long poll the client gives up on.
    const ac = new AbortController();
    const poll = api(`/v1/jobs/${ids[0]}?wait=0`, { signal: ac.signal }).catch(() => undefined);
    ac.abort();
    await poll;
    // A JSON batch, run to its end.
    const made = await api('/v1/batches', {
      method: 'POST',
      body: JSON.stringify({ model: 'mlp', items: Array.from({ length: 5 }, (_, i) => ({ custom_id: `r${i}`, input: { features: features() } })) }),
    });
    expect(made.status, await made.clone().text()).to.equal(202);
    const batch = (await made.json()) as { id: string };
    await waitUntil(async () => ((await (await api(`/v1/batches/${batch.id}`)).json()) as { status: string }).status === 'completed', 30_000, 'the batch');
    await waitUntil(() => receiver.deliveries.length >= 2, 15_000, 'the retried delivery');
    await waitUntil(() => workerLog.parsed().filter((l) => l.msg === 'job ended').length >= 3, 5_000, 'the job lines');

    const loud = (c: LogCapture) => c.parsed().filter((l) => (l.level as number) >= 40);
    expect(loud(gatewayLog), 'gateway lines at warn or above').to.deep.equal([]);
    expect(loud(workerLog), 'worker lines at warn or above').to.deep.equal([]);
    const ended = workerLog.parsed().filter((l) => l.msg === 'job ended');
    expect(ended.map((l) => l.jobId).sort()).to.deep.equal([...ids].sort());
    // Nothing from the clients' requests echoed (the 5,000-character model name, say).
    expect(gatewayLog.text + workerLog.text).to.not.contain('xxxxxxxxxx');
  });
});
