import net from 'node:net';
import { expect } from 'chai';
import { silentLogger } from '@infer/logger';
import { createGateway } from '../apps/gateway/src/index.js';
import { createWorker } from '../apps/worker/src/index.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * Two workers on one machine (README, Running more workers), or `npm start`
 * already running: the second process finds its port taken. It must not
 * start, and its error must say which variable to change, not only
 * `listen EADDRINUSE`.
 */
describe('a port already in use', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let taken: net.Server;
  let port: number;
  before(async () => {
    p = await startPlatform({ worker: false });
    taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    port = (taken.address() as net.AddressInfo).port;
  });
  after(async () => {
    await new Promise<void>((resolve) => taken.close(() => resolve()));
    await p.close();
  });

  it("stops a worker whose WORKER_METRICS_PORT is taken, naming the variable and that 0 picks a free one", async () => {
    const err = await createWorker({ ...p.config, workerMetricsPort: port }, silentLogger).then(
      async (w) => {
        await w.close();
        return undefined;
      },
      (e: unknown) => e as Error,
    );
    expect(err?.message).to.equal(`WORKER_METRICS_PORT ${port} is in use on 127.0.0.1 (another process listens there): set WORKER_METRICS_PORT to a free port, or 0 for any free one`);
  });

  it('fails a gateway whose PORT is taken, naming the variable', async () => {
    const gateway = await createGateway(p.config, silentLogger, { models: p.gateway.models });
    try {
      const err = await gateway.listen(port, '127.0.0.1').then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err?.message).to.equal(`PORT ${port} is in use on 127.0.0.1 (another process listens there): set PORT to a free port`);
    } finally {
      await gateway.close();
    }
  });
});
