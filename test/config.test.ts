import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { apiKeyDigest, ConfigError, DEFAULT_WEBHOOK_RETRY_DELAYS_MS, DEV_API_KEY, DEV_TENANT, loadConfig, type Config } from '@infer/config';

/** The config's keys as key → tenant, for keys the test knows (the config holds only digests). */
function keysOf(c: Config, keys: string[]): Record<string, string> {
  expect(c.apiKeyDigests.size, 'number of keys').to.equal(keys.length);
  return Object.fromEntries(keys.map((k) => [k, c.apiKeyDigests.get(apiKeyDigest(k)) ?? '(missing)']));
}

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
      tenantMaxOpenBatches: 100,
      tenantMaxQueued: undefined,
    });
    expect(c.webhookRetryDelaysMs).to.deep.equal(DEFAULT_WEBHOOK_RETRY_DELAYS_MS);
    // docs/api.md: by default at least 6 attempts over at least an hour.
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
      TENANT_MAX_OPEN_BATCHES: '3',
      TENANT_MAX_QUEUED: '500',
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
      tenantMaxOpenBatches: 3,
      tenantMaxQueued: 500,
    });
    expect(keysOf(c, ['key-1'])).to.deep.equal({ 'key-1': 'acme' });
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

  it('treats a blank value (FOO=" ") as unset too: a number is never read from it as 0', () => {
    const c = loadConfig({ PORT: ' ', WORKER_METRICS_PORT: '\t', MODEL_POLL_SECONDS: '  ', WEBHOOK_RETRY_DELAYS_MS: ' ' });
    expect(c.port).to.equal(8080);
    expect(c.workerMetricsPort).to.equal(9464);
    expect(c.modelPollMs).to.equal(5000);
    expect(c.webhookRetryDelaysMs).to.deep.equal(DEFAULT_WEBHOOK_RETRY_DELAYS_MS);
  });

  it('refuses what would quietly do something else: an OTLP endpoint without http(s)://, an empty retry delay; a tiny poll is not "never"', () => {
    const refused = (env: Record<string, string>, name: string) => {
      expect(() => loadConfig(env), JSON.stringify(env))
        .to.throw(ConfigError)
        .with.property('message')
        .that.includes(name);
    };
    // "otel-collector:4318" parses as a URL whose scheme is "otel-collector:"; the exporter would drop every span.
    for (const value of ['otel-collector:4318', 'localhost:4318', 'ftp://collector:4318']) refused({ OTEL_EXPORTER_OTLP_ENDPOINT: value }, 'OTEL_EXPORTER_OTLP_ENDPOINT');
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'https://collector.example:4318' }).otlpEndpoint).to.equal('https://collector.example:4318');
    // A doubled or trailing comma is not a 0 ms delay.
    for (const value of ['5000,,300000', '5000,', ',5000']) refused({ WEBHOOK_RETRY_DELAYS_MS: value }, 'WEBHOOK_RETRY_DELAYS_MS');
    // A schedule Redis could not keep a delivery log for (its expiry is the schedule's length): every event
    // would be refused at its creation and no webhook sent. Past 2^53, or summing to more than a year.
    for (const value of ['99999999999999999999', '20000000000,20000000000']) refused({ WEBHOOK_RETRY_DELAYS_MS: value }, 'WEBHOOK_RETRY_DELAYS_MS');
    expect(loadConfig({ WEBHOOK_RETRY_DELAYS_MS: '2592000000' }).webhookRetryDelaysMs).to.deep.equal([2_592_000_000]);
    // 0 means "never look at the folder": 0.4 ms is not that.
    expect(loadConfig({ MODEL_POLL_SECONDS: '0.0004' }).modelPollMs).to.equal(1);
    expect(loadConfig({ MODEL_POLL_SECONDS: '0' }).modelPollMs).to.equal(0);
  });

  it("says what a bad number was and what is wanted, in plain words rather than the schema library's", () => {
    const err = configError({ PORT: 'abc', RATE_LIMIT_PER_SECOND: '1.5', WORKER_LOCK_MS: '10', PORT_UNUSED: 'x' });
    expect(err.problems).to.include.members([
      'PORT: must be a number (got "abc")',
      'RATE_LIMIT_PER_SECOND: must be a whole number (got "1.5")',
      'WORKER_LOCK_MS: must be at least 1000 (got "10")',
    ]);
    expect(configError({ PORT: '70000' }).problems).to.deep.equal(['PORT: must be at most 65535 (got "70000")']);
  });

  it('reads numbers in decimal only: 0x1F90, 1e3 and Infinity are refused, naming what was given; spaces around one are fine', () => {
    expect(configError({ PORT: '0x1F90' }).problems).to.deep.equal(['PORT: must be a number (got "0x1F90")']);
    expect(configError({ MAX_WAIT_SECONDS: '1e2' }).problems).to.deep.equal(['MAX_WAIT_SECONDS: must be a number (got "1e2")']);
    expect(configError({ MAX_QUEUE_DEPTH: 'Infinity' }).problems).to.deep.equal(['MAX_QUEUE_DEPTH: must be a number (got "Infinity")']);
    expect(configError({ MODEL_POLL_SECONDS: '0b1' }).problems).to.deep.equal(['MODEL_POLL_SECONDS: must be a number (got "0b1")']);
    const c = loadConfig({ PORT: ' 8081 ', MODEL_POLL_SECONDS: '0.5', RATE_LIMIT_PER_SECOND: '+20' });
    expect([c.port, c.modelPollMs, c.rateLimitPerSecond]).to.deep.equal([8081, 500, 20]);
  });

  it('RESULT_TTL_SECONDS is at most ten years (past ~10^15 s Redis refuses the expiry, and every job end with it)', () => {
    expect(loadConfig({ RESULT_TTL_SECONDS: '315360000' }).resultTtlMs).to.equal(315_360_000_000);
    expect(configError({ RESULT_TTL_SECONDS: '315360001' }).problems).to.deep.equal(['RESULT_TTL_SECONDS: must be at most 315360000 (got "315360001")']);
  });

  it('HOST and MODEL_REPOSITORY lose the spaces around them (an env file\'s "HOST= 0.0.0.0")', () => {
    const c = loadConfig({ HOST: ' 127.0.0.1 ', MODEL_REPOSITORY: ' ./models ' });
    expect([c.host, c.modelRepository]).to.deep.equal(['127.0.0.1', './models']);
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
      TENANT_MAX_OPEN_BATCHES: '0',
      TENANT_MAX_QUEUED: '1.5',
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
    expect(keysOf(c, ['k1', 'k2', 'k3:with-colon'])).to.deep.equal({ k1: 'acme', k2: 'globex', 'k3:with-colon': 'acme' });
    expect(c.apiKeysAreDevDefault).to.equal(false);
  });

  it('refuses malformed API_KEYS without echoing the keys', () => {
    for (const raw of ['acme:', ':secret-1', 'bad tenant!:secret-1', 'a:secret-1,b:secret-1', ',,', 'a:secret-1 x', 'secret-1']) {
      const err = configError({ API_KEYS: raw });
      expect(err.problems.some((p) => p.startsWith('API_KEYS')), raw).to.equal(true);
      expect(err.message, raw).not.to.include('secret-1');
    }
  });

  it('refuses a near miss of NODE_ENV=production (it would run with the development key), naming it', () => {
    for (const value of [' production', 'Production', 'PRODUCTION ']) {
      expect(() => loadConfig({ NODE_ENV: value, API_KEYS: 'a:key-1' }), JSON.stringify(value))
        .to.throw(ConfigError)
        .with.property('message')
        .that.includes('NODE_ENV');
    }
    expect(loadConfig({ NODE_ENV: 'development' }).apiKeyDigests.size).to.equal(1);
  });

  it('uses the dev default key outside production, and requires API_KEYS in production', () => {
    for (const NODE_ENV of [undefined, 'development', 'test']) {
      const c = loadConfig({ NODE_ENV });
      expect(keysOf(c, [DEV_API_KEY])).to.deep.equal({ [DEV_API_KEY]: DEV_TENANT });
      expect(c.apiKeysAreDevDefault).to.equal(true);
    }
    const err = configError({ NODE_ENV: 'production' });
    expect(err.problems).to.have.length(1);
    expect(err.problems[0]).to.match(/^API_KEYS/);
    const prod = loadConfig({ NODE_ENV: 'production', API_KEYS: 'acme:k1' });
    expect(prod.apiKeyDigests.has(apiKeyDigest(DEV_API_KEY))).to.equal(false);
    expect(prod.apiKeysAreDevDefault).to.equal(false);
  });

  it('holds digests of the keys, never the keys', () => {
    const c = loadConfig({ API_KEYS: 'acme:sk-live-123' });
    expect([...c.apiKeyDigests.keys()]).to.deep.equal([apiKeyDigest('sk-live-123')]);
    expect(apiKeyDigest('sk-live-123')).to.match(/^[A-Za-z0-9_-]{43}$/);
    expect(JSON.stringify([...c.apiKeyDigests])).not.to.include('sk-live-123');
  });

  describe('API_KEYS_FILE', () => {
    let dir: string;
    const file = (name: string, text: string): string => {
      const at = path.join(dir, name);
      writeFileSync(at, text);
      return at;
    };
    before(() => {
      dir = mkdtempSync(path.join(tmpdir(), 'infer-keys-'));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('reads tenant:key lines, skipping blank lines and # comments (CRLF too)', () => {
      const at = file('keys', '# production keys\n\nacme:k1\r\n  globex : k2  \n\t# rotated 2025-01\nacme:k3:with-colon\n');
      const c = loadConfig({ API_KEYS_FILE: at });
      expect(keysOf(c, ['k1', 'k2', 'k3:with-colon'])).to.deep.equal({ k1: 'acme', k2: 'globex', 'k3:with-colon': 'acme' });
      expect(c.apiKeysAreDevDefault).to.equal(false);
    });

    it('merges with API_KEYS; satisfies NODE_ENV=production on its own', () => {
      const at = file('merge', 'acme:k1\n');
      expect(keysOf(loadConfig({ API_KEYS: 'globex:k2', API_KEYS_FILE: at }), ['k1', 'k2'])).to.deep.equal({ k1: 'acme', k2: 'globex' });
      expect(keysOf(loadConfig({ NODE_ENV: 'production', API_KEYS_FILE: at }), ['k1'])).to.deep.equal({ k1: 'acme' });
    });

    it('refuses a key listed twice, in the file or across both, naming the line and never the key', () => {
      const twice = configError({ API_KEYS_FILE: file('twice', 'acme:secret-9\n# c\nglobex:secret-9\n') });
      expect(twice.problems).to.deep.equal(['API_KEYS_FILE: line 3: a key is listed twice (tenant globex)']);
      const across = configError({ API_KEYS: 'acme:secret-9', API_KEYS_FILE: file('across', '\nglobex:secret-9\n') });
      expect(across.problems).to.deep.equal(['API_KEYS_FILE: line 2: a key is listed twice (tenant globex)']);
      for (const err of [twice, across]) expect(err.message).not.to.include('secret-9');
    });

    it('names the variable and the line of every bad line, without echoing it', () => {
      const at = file('bad', 'acme:ok-1\nsecret-7\n:secret-7\nbad tenant!:secret-7\nacme:secret 7\n');
      const err = configError({ API_KEYS_FILE: at });
      expect(err.problems).to.have.length(4);
      expect(err.problems[0]).to.equal('API_KEYS_FILE: line 2 is not of the form tenant:key');
      expect(err.problems[1]).to.equal('API_KEYS_FILE: line 3 is not of the form tenant:key');
      expect(err.problems[2]).to.match(/^API_KEYS_FILE: line 4: the tenant name must be 1-64 of/);
      expect(err.problems[2], 'not quoted: an entry written key:tenant would print the key').to.not.include('bad tenant!');
      expect(err.problems[3]).to.equal('API_KEYS_FILE: line 5: the key contains whitespace');
      expect(err.message).not.to.include('secret');
    });

    it('refuses a key outside visible ASCII (a client could never present it), in every key variable, without echoing it', () => {
      const at = file('non-ascii', 'acme:ключ-42\n');
      expect(configError({ API_KEYS_FILE: at }).problems).to.deep.equal(['API_KEYS_FILE: line 1: the key contains characters other than visible ASCII']);
      expect(configError({ API_KEYS: 'acme:clé-7' }).problems).to.deep.equal(['API_KEYS: entry 1: the key contains characters other than visible ASCII']);
      const admin = configError({ API_KEYS: 'acme:k1', ADMIN_API_KEYS: 'ops:pass\u0007word' });
      expect(admin.problems).to.deep.equal(['ADMIN_API_KEYS: entry 1: the key contains characters other than visible ASCII']);
      for (const err of [admin]) expect(err.message).not.to.include('pass');
      expect(keysOf(loadConfig({ API_KEYS: 'acme:A-z_0.9~!#$%&*+/=?@^|' }), ['A-z_0.9~!#$%&*+/=?@^|'])).to.deep.equal({ 'A-z_0.9~!#$%&*+/=?@^|': 'acme' });
    });

    it('a missing or unreadable file, or one without keys, is a ConfigError naming API_KEYS_FILE', () => {
      const missing = configError({ API_KEYS_FILE: path.join(dir, 'nope') });
      expect(missing.problems).to.have.length(1);
      expect(missing.problems[0]).to.match(/^API_KEYS_FILE: cannot read .*nope \(ENOENT\)$/);
      expect(configError({ API_KEYS_FILE: dir }).problems[0]).to.match(/^API_KEYS_FILE: cannot read .* \(EISDIR\)$/);
      expect(configError({ API_KEYS_FILE: file('empty', '# nothing yet\n\n') }).problems).to.deep.equal([`API_KEYS_FILE: ${path.join(dir, 'empty')} holds no keys`]);
      // Named together with the other bad variables.
      const both = configError({ API_KEYS_FILE: path.join(dir, 'nope'), PORT: 'x' });
      expect(both.problems.map((p) => p.split(':')[0]).sort()).to.deep.equal(['API_KEYS_FILE', 'PORT']);
    });
  });

  it('TENANT_MAX_OPEN_BATCHES and TENANT_MAX_QUEUED are positive integers', () => {
    for (const bad of ['0', '-1', '2.5', 'many']) {
      expect(configError({ TENANT_MAX_OPEN_BATCHES: bad }).problems[0], bad).to.match(/^TENANT_MAX_OPEN_BATCHES/);
      expect(configError({ TENANT_MAX_QUEUED: bad }).problems[0], bad).to.match(/^TENANT_MAX_QUEUED/);
    }
    expect(loadConfig({ TENANT_MAX_QUEUED: '' }).tenantMaxQueued).to.equal(undefined);
    expect(loadConfig({ TENANT_MAX_QUEUED: '1' }).tenantMaxQueued).to.equal(1);
  });
});
