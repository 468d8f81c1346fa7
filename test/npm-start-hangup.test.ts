import { expect } from 'chai';
import { TEST_KEY, SHIPPED_MODELS } from './helpers/platform.js';
import { freePort, pings, shutDownIfAnswering } from './helpers/redis-server.js';
import { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';

/**
 * README: `npm start` starts a throwaway redis-server "for the session", and scripts/start.ts promises
 * "However this process ends (short of SIGKILL), the throwaway Redis goes with it." That Redis is spawned
 * `detached` (a session of its own), so a hang-up of the terminal (SIGHUP to the foreground group: closing the
 * terminal window, an ssh session dropping) never reaches it: start.ts must take it down itself, as on Ctrl-C,
 * rather than die of the signal's default action with the redis-server left listening.
 */
describe('`npm start` hung up (SIGHUP to its process group)', function () {
  this.timeout(60_000);
  let start: Spawned | undefined;
  let redisUrl = '';

  after(async () => {
    start?.kill();
    // Whatever was left listening on the test's Redis port: shut it down.
    if (redisUrl) await shutDownIfAnswering(redisUrl);
  });

  it('takes the throwaway redis-server down with it, as it does on Ctrl-C', async () => {
    // No Redis at this address: start.ts starts a throwaway redis-server of its own.
    redisUrl = `redis://127.0.0.1:${await freePort()}`;
    start = new Spawned('start', {
      REDIS_URL: redisUrl,
      MODEL_REPOSITORY: SHIPPED_MODELS,
      API_KEYS: `tenant-a:${TEST_KEY}`,
      PORT: String(await freePort()),
      HOST: '127.0.0.1',
      WORKER_METRICS_PORT: '0',
    });
    await start.waitForLog('gateway listening', 30_000, { name: 'gateway' });
    await start.waitForLog('worker started', 30_000, { name: 'worker' });
    expect(await pings(redisUrl), 'the throwaway redis-server answers').to.equal(true);

    // The terminal goes away: SIGHUP to every process of the foreground group.
    start.signalGroup('SIGHUP');
    await start.exit(20_000);
    await waitUntil(() => !start!.groupAlive(), 5_000, 'every process of the group to be gone');
    await waitUntil(async () => !(await pings(redisUrl)), 5_000, 'the throwaway redis-server to be gone once npm start has ended');
  });
});
