import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { TEST_REDIS_URL, uniquePrefix } from './helpers/redis-keys.js';

/**
 * The lock-renewal thread never keeps a worker process alive: a process with a LockKeeper still open
 * (a close step that threw before stopping it, a crash path that never closes) exits when its work is
 * done. (A 'message' listener added to a Worker refs its port again: the thread is unref'd after it.)
 */
describe('locks: a process with a lock keeper open', function () {
  this.timeout(30_000);

  it('exits when nothing else is left to do (the thread is unref’d)', async () => {
    const prefix = uniquePrefix('rvl2-exit');
    const code = `
      import { Redis } from 'ioredis';
      import { silentLogger } from '@infer/logger';
      import { LockKeeper } from '@infer/locks';
      const connection = new Redis(${JSON.stringify(TEST_REDIS_URL)}, { lazyConnect: true });
      const keeper = new LockKeeper({ stalledKey: '${prefix}:q:stalled', activeKey: '${prefix}:q:active', baseKey: '${prefix}:q:', lockMs: 1000, maxRunMs: 60000, connection }, silentLogger);
      keeper.taking('token-${prefix}');
      console.log('opened');
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    // Bounded: the child is killed (by its own pid) if it has not exited in 15 s.
    const exited = await new Promise<number | null | 'hung'>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve('hung');
      }, 15_000);
      child.on('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect(out, 'the child opened its keeper').to.include('opened');
    expect(exited, 'the process exited by itself').to.equal(0);
  });
});
