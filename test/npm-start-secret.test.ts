import { expect } from 'chai';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT, SHIPPED_MODELS } from './helpers/platform.js';
import { freePort } from './helpers/redis-server.js';

/** Run scripts/start.ts as `npm start` does (`node --import tsx`), in a process group of its own; all it printed and its exit. */
function runStart(env: Record<string, string>, ms: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], {
      cwd: REPO_ROOT,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
      reject(new Error(`npm start did not exit within ${ms} ms:\n${output}`));
    }, ms);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/**
 * Secrets are never logged. REDIS_URL carries the Redis password (`redis://:pass@host/2`, as any hosted Redis
 * hands it out); `npm start` names the URL when no Redis answers there ("No Redis answers at …") or when it
 * starts its throwaway one ("No Redis at …: starting"): with the password hidden.
 */
describe('`npm start` never prints the Redis password', function () {
  this.timeout(30_000);

  it('says which Redis did not answer without the password in REDIS_URL', async () => {
    const password = 'Zr3v13w-s3cret-pw';
    // 127.0.0.2 is loopback on Linux but not one of start.ts's "this machine" names: a remote Redis that refuses.
    const { code, output } = await runStart(
      { REDIS_URL: `redis://:${password}@127.0.0.2:${await freePort()}/2`, MODEL_REPOSITORY: SHIPPED_MODELS, PORT: String(await freePort()), WORKER_METRICS_PORT: '0' },
      20_000,
    );
    expect(code, output).to.equal(1);
    expect(output, 'it said why it stopped').to.include('No Redis answers at');
    expect(output, 'the password from REDIS_URL was printed').not.to.include(password);
  });
});
