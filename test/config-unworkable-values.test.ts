import { spawn } from 'node:child_process';
import { expect } from 'chai';
import { ConfigError, loadConfig } from '@infer/config';
import { REPO_ROOT, SHIPPED_MODELS, uniquePrefix } from './helpers/platform.js';

/**
 * README: "A bad
 * value stops the process with a message naming every bad variable", and
 * runProcess (packages/lifecycle) exits 2 for a ConfigError.
 */

/** Run the gateway as `npm run start:gateway` does; its exit code and everything it printed. */
function runGateway(env: Record<string, string>, ms: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'apps/gateway/src/main.ts'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LOG_LEVEL: 'info', PORT: '0', HOST: '127.0.0.1', MODEL_REPOSITORY: SHIPPED_MODELS, QUEUE_PREFIX: uniquePrefix('cfg'), ...env },
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`gateway did not exit within ${ms} ms:\n${out}`));
    }, ms);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe('config: values that look valid but cannot work', function () {
  this.timeout(60_000);

  it('REDIS_URL with a port out of range (redis://127.0.0.1:99999) is a ConfigError naming REDIS_URL', () => {
    let err: unknown;
    try {
      loadConfig({ REDIS_URL: 'redis://127.0.0.1:99999' });
    } catch (e) {
      err = e;
    }
    expect(err, 'loadConfig accepted REDIS_URL=redis://127.0.0.1:99999').to.be.instanceOf(ConfigError);
    expect((err as ConfigError).problems.join('\n')).to.match(/^REDIS_URL: /);
  });

  it('a gateway given REDIS_URL=redis://127.0.0.1:99999 stops with exit code 2 and a message naming REDIS_URL, not a TypeError stack', async () => {
    const { code, out } = await runGateway({ REDIS_URL: 'redis://127.0.0.1:99999' }, 30_000);
    expect({ code, namesVariable: /REDIS_URL/.test(out), stack: /TypeError: Invalid URL/.test(out) }, out).to.deep.equal({ code: 2, namesVariable: true, stack: false });
  });

  it('a setting that becomes a timer, past the longest timer Node keeps (2^31 - 1 ms), is refused: it would fire after 1 ms', () => {
    // 3e9 ms (~35 days) as WORKER_LOCK_MS made the webhook worker's stalled-jobs check run every millisecond.
    for (const name of ['WORKER_LOCK_MS', 'SHUTDOWN_FORCE_GRACE_MS']) {
      let err: unknown;
      try {
        loadConfig({ [name]: '3000000000' });
      } catch (e) {
        err = e;
      }
      expect(err, `${name}=3000000000 was accepted`).to.be.instanceOf(ConfigError);
      expect((err as ConfigError).problems.join('\n')).to.match(new RegExp(`^${name}: must be at most 2147483647`));
      expect(() => loadConfig({ [name]: '2147483647' }), `${name}=2147483647`).not.to.throw();
    }
  });
});
