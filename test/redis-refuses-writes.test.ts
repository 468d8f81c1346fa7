import { expect } from 'chai';
import { Redis } from 'ioredis';
import { loadConfig } from '@infer/config';
import { createLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { SHIPPED_MODELS } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';
import { waitUntil } from './helpers/wait.js';
import { LogCapture } from './helpers/log-capture.js';

/**
 * README "Logs": "API keys, webhook secrets, inputs, outputs and metadata are
 * never logged"; packages/logger: "API keys, secrets, inputs and outputs
 * redacted". A Redis error on a submit that is not one of the "Redis is
 * unavailable" kinds (here MISCONF: Redis cannot persist, e.g. its disk is
 * full, and refuses writes) is answered 500 and logged as
 * `logger.error({ err, … }, 'unhandled error')`. ioredis puts the failed
 * command on its ReplyError (`err.command.args`): for the enqueue script
 * that is the envelope itself, the jobs' metadata, webhook URLs and input
 * bytes, and pino prints every enumerable property of the error.
 */

/** Every line a pino logger writes. */

describe('a Redis error on a submit logs no metadata or inputs', function () {
  this.timeout(30_000);
  const KEY = 'sk-test-tenant-key-1';
  const METADATA_SECRET = 'sk_live_testMetadataSecret42';
  let redis: OwnRedis;
  let gateway: Gateway;
  let base: string;
  const log = new LogCapture();

  before(async () => {
    // A Redis of the test's own that will fail to persist: its snapshots go to a folder nobody can write files in,
    // and with a save point set, a failed BGSAVE makes it refuse writes (stop-writes-on-bgsave-error, the default).
    redis = await OwnRedis.start(['--save', '3600 1', '--dir', '/proc']);
    const config = loadConfig({ REDIS_URL: redis.url, MODEL_REPOSITORY: SHIPPED_MODELS, QUEUE_PREFIX: 'obs-leak', API_KEYS: `acme:${KEY}` });
    gateway = await createGateway(config, createLogger({ level: 'debug', name: 'gateway', destination: log }));
    base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;
  });

  after(async () => {
    await gateway?.close();
    await redis?.stop();
  });

  it('keeps the metadata, the webhook URL and the inputs of the refused job out of the log', async () => {
    const admin = new Redis(redis.url);
    try {
      await admin.bgsave();
      await waitUntil(async () => /rdb_last_bgsave_status:err/.test(await admin.info('persistence')), 5000, 'the snapshot to fail');
    } finally {
      admin.disconnect();
    }
    const features = Array.from({ length: 64 }, (_, i) => 0.1234567 + i / 1e6);
    const res = await fetch(`${base}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mlp', input: { features }, metadata: { api_token: METADATA_SECRET }, webhook: 'https://hooks.example.com/in?token=whk_testToken' }),
    });
    // Refused, whatever the code (the job could not be written).
    // A Redis that refuses writes is unavailable for now, as a full one is.
    expect(res.status).to.equal(503);
    expect(res.headers.get('retry-after')).to.equal('2');
    expect(((await res.json()) as { code: string }).code).to.equal('unavailable');
    await waitUntil(() => log.lines.length > 0, 5000, 'the gateway to log the failure');

    const text = log.text;
    expect(text, 'the job\'s metadata in the log').to.not.contain(METADATA_SECRET);
    expect(text, 'the envelope (jobs, tenants, metadata) in the log').to.not.contain('api_token');
    expect(text, 'the job\'s webhook URL in the log').to.not.contain('whk_testToken');
    // The input bytes: pino prints a Buffer as {"type":"Buffer","data":[…]}.
    expect(text, 'input bytes in the log').to.not.contain('"type":"Buffer"');
    expect(text, 'the API key in the log').to.not.contain(KEY);
  });

  it('redacts the command of a Redis error logged whole (an error the gateway does not know)', () => {
    const capture = new LogCapture();
    const logger = createLogger({ level: 'info', name: 'test', destination: capture });
    const err = Object.assign(new Error('ERR something new'), { command: { name: 'evalsha', args: ['sha', METADATA_SECRET] } });
    logger.error({ err }, 'unhandled error');
    logger.warn({ job: { err } }, 'nested');
    expect(capture.text).to.contain('ERR something new');
    expect(capture.text).to.not.contain(METADATA_SECRET);
  });
});
