/**
 * The deployment story: docker-compose.yml and the Dockerfile against what
 * packages/config and the apps do, and against what the README and
 * docs/operations.md promise an operator. Static except the last test,
 * which runs a worker as PID 1 (what `docker run` without --init and
 * Kubernetes do with this image) when `unshare` can make a PID namespace.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { apiKeyDigest, loadConfig } from '@infer/config';
import { waitUntil } from './helpers/wait.js';

const REPO_ROOT = path.resolve(import.meta.dirname, '..');
const read = (...parts: string[]) => readFileSync(path.join(REPO_ROOT, ...parts), 'utf8');

type Yaml = { load(text: string): unknown };
type Obj = Record<string, unknown>;

async function loadYaml(): Promise<Yaml | undefined> {
  // js-yaml comes with the dev tools (mocha), as in test/metrics.test.ts.
  const name = 'js-yaml';
  return (await import(name).catch(() => undefined)) as Yaml | undefined;
}

/** A mapping with YAML merge keys (`<<: *anchor`) resolved, as Compose resolves them. */
function merged(map: Obj): Obj {
  const { '<<': base, ...rest } = map;
  return { ...(base ? merged(base as Obj) : {}), ...rest };
}

/** Compose's interpolation of `${VAR}`, `${VAR:-default}` and `${VAR-default}` against the shell/.env. */
function interpolate(value: string, shell: Record<string, string | undefined>): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}/g, (_all, name: string, op: string | undefined, def: string | undefined) => {
    const v = shell[name];
    if (op === ':-') return v === undefined || v === '' ? def! : v;
    if (op === '-') return v === undefined ? def! : v;
    return v ?? '';
  });
}

/** The environment one compose service's container gets, for this shell environment. */
function containerEnv(compose: { services: Record<string, Obj> }, service: string, shell: Record<string, string | undefined>): Record<string, string> {
  const svc = merged(compose.services[service]!);
  const env = merged(svc.environment as Obj);
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, interpolate(String(v), shell)]));
}

describe('deploying with docker compose', () => {
  let compose: { services: Record<string, Obj> };
  before(async function () {
    const yaml = await loadYaml();
    if (!yaml) this.skip();
    compose = yaml!.load(read('docker-compose.yml')) as { services: Record<string, Obj> };
  });

  // An operator who keeps the keys in a mounted file (API_KEYS unset, or empty, which counts as unset) must not
  // get the public development key `dev-key` let in beside them; with no keys at all, production refuses to start.
  for (const [label, shell] of [
    ['API_KEYS unset', {}],
    ['API_KEYS empty', { API_KEYS: '' }],
  ] as const) {
    it(`API_KEYS_FILE alone (${label}) lets in its keys and not the development key`, () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'deploy-compose-'));
      try {
        const file = path.join(dir, 'api-keys');
        writeFileSync(file, 'acme:s3cret-from-the-file\n');
        for (const service of ['gateway', 'worker']) {
          const config = loadConfig(containerEnv(compose, service, { ...shell, API_KEYS_FILE: file }));
          expect(config.apiKeyDigests.get(apiKeyDigest('s3cret-from-the-file')), service).to.equal('acme');
          expect(config.apiKeyDigests.has(apiKeyDigest('dev-key')), `${service}: dev-key is let in`).to.equal(false);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('with no keys at all, every process refuses to start (production), naming API_KEYS', () => {
    for (const service of ['gateway', 'worker']) expect(() => loadConfig(containerEnv(compose, service, {})), service).to.throw(/API_KEYS/);
  });

  // docker-compose.yml's own comment, and docs/operations.md ("Redis settings", "When Redis is full"): with
  // noeviction "a full Redis refuses submits (503) and drains", batch uploads stop at 90% of maxmemory.
  // All of that needs a maxmemory: without one Redis is never "full" (apps/gateway/src/batches/redis-memory.ts:
  // "No `maxmemory` set: never full") and grows until the kernel's OOM killer ends it.
  it("the compose Redis has a maxmemory, so the noeviction policy and the full-Redis answers apply", () => {
    const command = (compose.services.redis!.command as string[]).join(' ');
    expect(command).to.match(/--maxmemory-policy noeviction/);
    expect(command, 'redis-server command line').to.match(/--maxmemory (?!0\b)\S+/);
  });

  // A worker logs a line a job: Docker's default json-file driver never rotates, and at a thousand jobs a second
  // fills a host's disk in days. Every service the platform runs has a driver that rotates.
  it('the gateway, the workers and Redis log through a rotating driver', () => {
    for (const service of ['gateway', 'worker', 'redis']) {
      const logging = merged(compose.services[service]!).logging as { driver?: string; options?: Record<string, string> } | undefined;
      expect(logging, service).to.not.equal(undefined);
      const rotates = logging!.driver === 'local' || (logging!.driver === 'json-file' && logging!.options?.['max-size'] !== undefined);
      expect(rotates, `${service}: ${JSON.stringify(logging)}`).to.equal(true);
      expect(logging!.options?.['max-size'], service).to.match(/^\d+[kmg]$/);
    }
  });

  // While Redis replays a large AOF its ping answers LOADING: without a start period, ten failed checks mark it
  // unhealthy and `docker compose up` gives up on the gateway and the workers, which wait for it to be healthy.
  it("Redis's healthcheck has a start period for an AOF replay, and its stop time lets it finish writing", () => {
    const redis = compose.services.redis!;
    const health = redis.healthcheck as { start_period?: string };
    expect(health.start_period, 'healthcheck.start_period').to.match(/^\d+m$/);
    expect(Number(/^(\d+)m$/.exec(health.start_period!)![1]), 'minutes').to.be.at.least(5);
    expect(redis.stop_grace_period).to.be.a('string');
  });

  // Neither Prometheus nor Grafana (admin password `admin` by default) has authentication to face a network.
  it('Prometheus and Grafana are published on this host only', () => {
    for (const service of ['prometheus', 'grafana']) {
      const ports = compose.services[service]!.ports as string[];
      for (const port of ports) expect(port, service).to.match(/^127\.0\.0\.1:/);
    }
  });

  // Every process reads API_KEYS_FILE at start (one config), so a worker without the file refuses to start:
  // the README's table must not say only the gateway uses it.
  it("README: API_KEYS_FILE's 'used by' names every process that needs the file", () => {
    const text = read('README.md');
    const row = /^\| `API_KEYS_FILE` \| ([^|]+) \|/m.exec(text.slice(text.indexOf('## Configuration')));
    expect(row).to.not.equal(null);
    const usedBy = row![1]!.trim();
    if (usedBy !== 'gateway') return;
    // The worker's container environment, with the keys file mounted into the gateway only.
    const env = containerEnv(compose, 'worker', { API_KEYS: 'acme:s3cret', API_KEYS_FILE: '/run/secrets/not-mounted-here' });
    expect(() => loadConfig(env), 'a worker without the file README says only the gateway uses').to.not.throw();
  });
});

describe('the image stops on SIGTERM whatever runs it', () => {
  // Dockerfile: CMD ["node", …] with no init of its own, so under `docker run` (no --init) or Kubernetes node
  // is PID 1, where a signal without a handler is ignored: a worker still starting (waiting for Redis, loading
  // models) must exit on SIGTERM all the same, not wait for the SIGKILL at the end of the stop timeout.
  it('a worker run as PID 1, still waiting for Redis, exits on SIGTERM', async function () {
    this.timeout(30_000);
    const dockerfile = read('Dockerfile');
    if (/^ENTRYPOINT\s+\[?\s*"?(\S*\/)?(tini|dumb-init|docker-init)/m.test(dockerfile)) return; // the image brings an init
    if (spawnSync('unshare', ['-fp', '--mount-proc', 'true']).status !== 0) this.skip();
    const child = spawn('unshare', ['-fp', '--mount-proc', process.execPath, '--import', 'tsx', 'apps/worker/src/main.ts'], {
      cwd: REPO_ROOT,
      env: { ...process.env, REDIS_URL: 'redis://127.0.0.1:1', WORKER_METRICS_PORT: '0', LOG_LEVEL: 'warn', NODE_ENV: 'development' },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    // Its first complaint about Redis: it is inside start() now, waiting for Redis.
    const waiting = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 20_000);
      child.stdout!.on('data', (d: Buffer) => {
        if (d.toString().includes('redis connection error')) {
          clearTimeout(timer);
          resolve(true);
        }
      });
    });
    try {
      // The node inside the namespace: the unshare process's only child.
      const nodePid = await waitUntil(() => Number(spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' }).stdout.trim().split('\n')[0]) || undefined, 10_000, 'the worker inside the namespace');
      expect(await waiting, 'the worker logged that it waits for Redis').to.equal(true);
      process.kill(nodePid, 'SIGTERM');
      const exited = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 8000);
        child.once('exit', () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      expect(exited, 'the worker (PID 1) was still running 8 s after SIGTERM').to.equal(true);
    } finally {
      const out = spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' }).stdout.trim();
      for (const pid of out.split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // gone
        }
      }
      child.kill('SIGKILL');
    }
  });
});
