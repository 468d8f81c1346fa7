import { expect } from 'chai';
import { loadConfig } from '@infer/config';
import { createLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { deletePrefix, SHIPPED_MODELS, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';
import { LogCapture } from './helpers/log-capture.js';

/** Every line a pino logger writes, as the process would print it. */

describe('logs: one line per job end, and nothing secret, no inputs, no outputs', function () {
  this.timeout(60_000);
  const TENANT_KEY = 'sk-tenant-key-7f3a9c1e5b';
  const METADATA_SECRET = 'sk_live_51HxMetadataSecret9q8w7e';
  const prefix = uniquePrefix('logs');
  const gatewayLog = new LogCapture();
  const workerLog = new LogCapture();
  let gateway: Gateway;
  let worker: InferenceWorker;
  let base: string;
  let receiver: WebhookReceiver;

  before(async () => {
    receiver = await startWebhookReceiver();
    const config = loadConfig({ REDIS_URL: TEST_REDIS_URL, MODEL_REPOSITORY: SHIPPED_MODELS, QUEUE_PREFIX: prefix, API_KEYS: `acme:${TENANT_KEY}`, WEBHOOK_ALLOW_PRIVATE: 'true' });
    // debug, not info: the widest net for a leak.
    gateway = await createGateway(config, createLogger({ level: 'debug', name: 'gateway', destination: gatewayLog }));
    worker = await createWorker(config, createLogger({ level: 'debug', name: 'worker', destination: workerLog }), { models: gateway.models });
    base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;
  });

  after(async () => {
    await worker?.close();
    await gateway?.close();
    await receiver?.close();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it('logs each job once at info with its figures, and never a key, a secret, an input or an output', async () => {
    const api = (path: string, init: RequestInit = {}) => fetch(base + path, { ...init, headers: { authorization: `Bearer ${TENANT_KEY}`, ...init.headers } });
    const whsec = ((await (await api('/v1/webhooks/secret')).json()) as { secret: string }).secret;
    // Distinctive inputs: no other number in a log line looks like these.
    const features = Array.from({ length: 64 }, (_, i) => 0.1234567 + i / 1e6);
    const ids: string[] = [];
    const outputs: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await api('/v1/jobs', {
        method: 'POST',
        headers: { prefer: 'wait=10' },
        body: JSON.stringify({ model: 'mlp', input: { features }, metadata: { api_token: METADATA_SECRET, n: i }, webhook: receiver.url, webhook_events_filter: ['start', 'completed'] }),
      });
      const job = (await res.json()) as { id: string; status: string; output: { probabilities: number[] } };
      expect(job.status).to.equal('succeeded');
      ids.push(job.id);
      outputs.push(...job.output.probabilities);
    }
    // A wrong key and a malformed body: the gateway's error paths see the Authorization header too.
    expect((await fetch(`${base}/v1/jobs`, { method: 'POST', headers: { authorization: 'Bearer sk-wrong-key-0000' }, body: '{}' })).status).to.equal(401);
    expect((await api('/v1/jobs', { method: 'POST', body: '{"model":' })).status).to.equal(400);
    await waitUntil(() => receiver.deliveries.length >= 6, 15_000, 'the webhook deliveries');
    await waitUntil(() => workerLog.parsed().filter((l) => l.msg === 'job ended').length >= 3, 5_000, 'the job lines');

    const ended = workerLog.parsed().filter((l) => l.msg === 'job ended');
    expect(ended.map((l) => l.jobId).sort()).to.deep.equal([...ids].sort());
    for (const line of ended) {
      expect(line).to.include({ level: 30, name: 'worker', model: 'mlp', version: '2', status: 'succeeded', batch_size: 1 });
      expect(line.queue_ms).to.be.a('number');
      expect(line.inference_ms).to.be.a('number');
      expect(line, 'no trace id without tracing').to.not.have.property('traceId');
      expect(Object.keys(line).sort()).to.deep.equal(['batch_size', 'inference_ms', 'jobId', 'level', 'model', 'msg', 'name', 'pid', 'queue_ms', 'status', 'time', 'version']);
    }

    const everything = gatewayLog.text + workerLog.text;
    for (const secret of [TENANT_KEY, 'sk-wrong-key-0000', METADATA_SECRET, whsec, whsec.slice('whsec_'.length)]) {
      expect(everything, 'a secret in the logs').to.not.contain(secret);
    }
    expect(everything, 'an input value in the logs').to.not.contain('0.1234');
    for (const value of outputs) expect(everything, 'an output value in the logs').to.not.contain(String(value));
  });
});
