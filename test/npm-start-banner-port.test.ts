import { expect } from 'chai';
import { deletePrefix, SHIPPED_MODELS, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { Spawned } from './helpers/spawned.js';

/**
 * `npm start` prints "Gateway on http://localhost:<port>" once the gateway listens, for a newcomer to
 * click. PORT=0 (the config takes 0-65535) makes the gateway listen on a free port: the banner names that
 * one (the gateway tells it in its ready note), where it said `:0`.
 */
describe('npm start: the banner names the port the gateway listens on', function () {
  this.timeout(90_000);
  const prefix = uniquePrefix('banner-port');
  let start: Spawned | undefined;

  after(async () => {
    start?.kill();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it('PORT=0: the banner says the port picked, not :0', async () => {
    // The test's own model repository, never the user's ./models (nor a first run's build of it).
    start = new Spawned('start', { REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: prefix, PORT: '0', WORKER_METRICS_PORT: '0', HOST: '127.0.0.1', MODEL_REPOSITORY: SHIPPED_MODELS });
    await start.waitForLog('Gateway on http://', 60_000);
    // The gateway's own line is relayed through npm start's output: it may come just after the banner.
    await start.waitForLog('gateway listening', 30_000, { name: 'gateway' });
    const listening = start.logged('gateway listening', 'gateway')[0]!;
    const banner = start.logged('Gateway on http://')[0]!.msg!;
    start.signalGroup('SIGINT');
    const exit = await start.exit(40_000);
    expect(exit.code).to.equal(0);
    expect(Number(listening.port)).to.be.above(0);
    expect(banner, 'the banner').to.contain(`http://localhost:${String(listening.port)} `);
  });
});
