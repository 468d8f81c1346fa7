import { expect } from 'chai';
import type { Worker } from 'node:worker_threads';
import { serveMetrics } from '../apps/worker/src/metrics-server.js';
import type { Logger } from '@infer/logger';
import { waitUntil } from './helpers/wait.js';

/**
 * The worker's probe thread (metrics-server.ts) is supervised: one that
 * ends after it listened is logged and started again on the same port, and
 * close() settles whatever state the thread is in. Before, nothing was
 * logged or restarted, and close() never settled once the thread had died
 * (a worker's shutdown then waited out its deadline and exited 1).
 *
 * The thread is ended from outside (terminate), as any uncaught error in
 * it would end it.
 */
describe('the worker probe thread, ended after it listened', function () {
  this.timeout(20_000);

  it('is logged and started again on the same port, and close() settles', async () => {
    const threads: Worker[] = [];
    const onWorker = (w: Worker) => threads.push(w);
    process.on('worker', onWorker);
    const logged: string[] = [];
    const logger = { error: (_o: unknown, msg: string) => logged.push(msg) } as unknown as Logger;
    try {
      const server = await serveMetrics({ contentType: 'text/plain; version=0.0.4', scrape: async () => 'x 1\n' }, 0, '127.0.0.1', 60_000, logger);
      expect(threads, 'the probe thread').to.have.length(1);
      expect((await fetch(`http://127.0.0.1:${server.port}/healthz`)).status).to.equal(200);
      await threads[0]!.terminate();
      await waitUntil(async () => (await fetch(`http://127.0.0.1:${server.port}/healthz`).then((r) => r.status, () => 0)) === 200 && threads.length === 2, 10_000, 'a new thread serving the same port');
      expect(logged).to.include('the metrics and /healthz server thread stopped; starting it again');
      expect(await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text()).to.equal('x 1\n');
      await server.close();
      // Closed: nothing listens, and a thread that had died first closes at once too.
      expect(await fetch(`http://127.0.0.1:${server.port}/healthz`).then((r) => r.status, () => 'refused')).to.equal('refused');
      const second = await serveMetrics({ contentType: 'text/plain', scrape: async () => '' }, 0, '127.0.0.1', 60_000);
      const exited = new Promise((resolve) => threads[2]!.once('exit', resolve));
      process.off('worker', onWorker);
      // Stopped for good before the close: no restart races it (the close comes within the respawn pause).
      await threads[2]!.terminate();
      await exited;
      let closed = false;
      void second.close().then(() => (closed = true));
      await waitUntil(() => closed, 5_000, 'close() to settle');
    } finally {
      process.off('worker', onWorker);
    }
  });

  it('a scrape whose content type Node refuses in a header fails that request, not the thread', async () => {
    const server = await serveMetrics({ contentType: 'text/plain\n', scrape: async () => 'x 1\n' }, 0, '127.0.0.1', 60_000);
    try {
      await fetch(`http://127.0.0.1:${server.port}/metrics`).catch(() => undefined);
      expect((await fetch(`http://127.0.0.1:${server.port}/healthz`)).status).to.equal(200);
    } finally {
      await server.close();
    }
  });
});
