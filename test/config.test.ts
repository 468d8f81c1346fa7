import { expect } from 'chai';
import { ConfigError, DEFAULT_WEBHOOK_RETRY_DELAYS_MS, DEV_API_KEY, DEV_TENANT, loadConfig } from '@infer/config';

function configError(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('config: loadConfig(env)', () => {
  it('gives the documented defaults for an empty environment', () => {
    const c = loadConfig({});
    expect(c).to.deep.include({
      redisUrl: 'redis://127.0.0.1:6379',
      port: 8080,
      host: '0.0.0.0',
      modelRepository: './models',
      queuePrefix: 'infer',
      resultTtlMs: 86_400_000,
      maxBodyBytes: 10 * 1024 * 1024,
      maxQueueDepth: 1_000_000,
      rateLimitPerSecond: 1000,
      webhookAllowPrivate: false,
      workerLockMs: 30_000,
      workerModels: [],
      logLevel: 'info',
      maxWaitMs: 60_000,
    });
    expect(c.webhookRetryDelaysMs).to.deep.equal(DEFAULT_WEBHOOK_RETRY_DELAYS_MS);
    // API.md: by default at least 6 attempts over at least an hour.
    expect(c.webhookRetryDelaysMs.length + 1).to.be.at.least(6);
    expect(c.webhookRetryDelaysMs.reduce((a, b) => a + b, 0)).to.be.at.least(3_600_000);
  });

  it('parses every variable, normalising units to ms', () => {
    const c = loadConfig({
      REDIS_URL: 'rediss://user:pw@redis.internal:6380/2',
      PORT: '9090',
      HOST: '127.0.0.1',
      MODEL_REPOSITORY: '/srv/models',
      API_KEYS: 'acme:key-1',
      QUEUE_PREFIX: 'prod:infer',
      RESULT_TTL_SECONDS: '3600',
      MAX_BODY_BYTES: '2048',
      MAX_QUEUE_DEPTH: '50',
      RATE_LIMIT_PER_SECOND: '7',
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WEBHOOK_RETRY_DELAYS_MS: '100, 200,300',
      WORKER_LOCK_MS: '5000',
      WORKER_MODELS: 'mlp, ocr-cls',
      LOG_LEVEL: 'debug',
      MAX_WAIT_SECONDS: '5',
    });
    expect(c).to.deep.include({
      redisUrl: 'rediss://user:pw@redis.internal:6380/2',
      port: 9090,
      host: '127.0.0.1',
      modelRepository: '/srv/models',
      queuePrefix: 'prod:infer',
      resultTtlMs: 3_600_000,
      maxBodyBytes: 2048,
      maxQueueDepth: 50,
      rateLimitPerSecond: 7,
      webhookAllowPrivate: true,
      webhookRetryDelaysMs: [100, 200, 300],
      workerLockMs: 5000,
      workerModels: ['mlp', 'ocr-cls'],
      logLevel: 'debug',
      maxWaitMs: 5000,
      apiKeysAreDevDefault: false,
    });
    expect([...c.apiKeys]).to.deep.equal([['key-1', 'acme']]);
  });

  it('reads booleans as people write them, and refuses anything else', () => {
    for (const v of ['true', '1', 'yes']) expect(loadConfig({ WEBHOOK_ALLOW_PRIVATE: v }).webhookAllowPrivate, v).to.equal(true);
    for (const v of ['false', '0', 'no']) expect(loadConfig({ WEBHOOK_ALLOW_PRIVATE: v }).webhookAllowPrivate, v).to.equal(false);
    expect(configError({ WEBHOOK_ALLOW_PRIVATE: 'maybe' }).message).to.include('WEBHOOK_ALLOW_PRIVATE');
  });

  it('treats an empty value (FOO= in an env file) as unset', () => {
    const c = loadConfig({ PORT: '', REDIS_URL: '', API_KEYS: '', RESULT_TTL_SECONDS: undefined });
    expect(c.port).to.equal(8080);
    expect(c.redisUrl).to.equal('redis://127.0.0.1:6379');
    expect(c.resultTtlMs).to.equal(86_400_000);
    expect(c.apiKeysAreDevDefault).to.equal(true);
  });

  it('throws one ConfigError that names every bad variable at once', () => {
    const bad: Record<string, string> = {
      REDIS_URL: 'http://localhost:6379',
      PORT: 'eighty',
      QUEUE_PREFIX: 'has spaces!',
      RESULT_TTL_SECONDS: '1.5',
      MAX_BODY_BYTES: '-1',
      MAX_QUEUE_DEPTH: 'lots',
      RATE_LIMIT_PER_SECOND: '0',
      WEBHOOK_ALLOW_PRIVATE: 'maybe',
      WEBHOOK_RETRY_DELAYS_MS: '5,soon',
      WORKER_LOCK_MS: '10',
      LOG_LEVEL: 'loud',
      MAX_WAIT_SECONDS: '0',
      API_KEYS: 'no-colon-here',
    };
    const err = configError(bad);
    for (const name of Object.keys(bad)) {
      expect(err.problems.some((p) => p.startsWith(name)), `${name} in ${JSON.stringify(err.problems)}`).to.equal(true);
      expect(err.message).to.include(name);
    }
    // A good variable next to bad ones is not blamed.
    expect(configError({ PORT: 'x', HOST: 'example.com' }).problems.join('\n')).not.to.include('HOST');
  });

  it('names a missing API_KEYS in production together with the other bad variables', () => {
    const err = configError({ NODE_ENV: 'production', PORT: 'x' });
    expect(err.problems.some((p) => p.startsWith('PORT'))).to.equal(true);
    expect(err.problems.some((p) => p.startsWith('API_KEYS'))).to.equal(true);
  });

  it('parses API_KEYS as tenant:key pairs; several keys may share a tenant', () => {
    const c = loadConfig({ API_KEYS: ' acme:k1, globex:k2,acme:k3:with-colon ,' });
    expect(Object.fromEntries(c.apiKeys)).to.deep.equal({ k1: 'acme', k2: 'globex', 'k3:with-colon': 'acme' });
    expect(c.apiKeysAreDevDefault).to.equal(false);
  });

  it('refuses malformed API_KEYS without echoing the keys', () => {
    for (const raw of ['acme:', ':secret-1', 'bad tenant!:secret-1', 'a:secret-1,b:secret-1', ',,']) {
      const err = configError({ API_KEYS: raw });
      expect(err.problems.some((p) => p.startsWith('API_KEYS')), raw).to.equal(true);
      expect(err.message, raw).not.to.include('secret-1');
    }
  });

  it('uses the dev default key outside production, and requires API_KEYS in production', () => {
    for (const NODE_ENV of [undefined, 'development', 'test']) {
      const c = loadConfig({ NODE_ENV });
      expect(Object.fromEntries(c.apiKeys)).to.deep.equal({ [DEV_API_KEY]: DEV_TENANT });
      expect(c.apiKeysAreDevDefault).to.equal(true);
    }
    const err = configError({ NODE_ENV: 'production' });
    expect(err.problems).to.have.length(1);
    expect(err.problems[0]).to.match(/^API_KEYS/);
    const prod = loadConfig({ NODE_ENV: 'production', API_KEYS: 'acme:k1' });
    expect(prod.apiKeys.has(DEV_API_KEY)).to.equal(false);
    expect(prod.apiKeysAreDevDefault).to.equal(false);
  });
});
