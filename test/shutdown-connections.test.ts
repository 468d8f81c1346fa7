import net from 'node:net';
import { expect } from 'chai';
import { InferClient, InferTimeoutError } from '@infer/sdk';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';

/**
 * docs/operations.md: a gateway told to stop "stops listening and answers the
 * requests in flight". A connection that has asked nothing is no request in
 * flight, but Node's server counts one that has not sent a whole request
 * as busy (closeIdleConnections skips it) and close() waited for it until
 * headersTimeout (66 s). Clients open such connections: undici opens a spare
 * one after a request it aborted (an SDK deadline), browsers preconnect.
 */

/** A connection to the gateway that sends `bytes` (maybe none) and then nothing; resolves once it is open. */
async function quietConnection(p: TestPlatform, bytes: string): Promise<{ closedByServer: Promise<void>; socket: net.Socket }> {
  const { port } = new URL(p.baseUrl);
  const socket = net.connect(Number(port), '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  if (bytes) socket.write(bytes);
  socket.on('error', () => undefined); // a reset is a close too
  return { socket, closedByServer: new Promise((resolve) => socket.once('close', () => resolve())) };
}

/** Close the platform; throw if that takes over `ms` (far below the 66 s the connection could hold it). */
async function closeWithin(p: TestPlatform, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`close() took over ${ms} ms`)), ms)));
  try {
    await Promise.race([p.close(), bound]);
  } finally {
    clearTimeout(timer);
  }
}

describe('shutdown: connections that have asked nothing do not hold the gateway open', function () {
  this.timeout(30_000);

  for (const [what, bytes] of [
    ['an open connection that has sent nothing', ''],
    ['a connection with half a request line', 'GET /v1/jo'],
  ] as const) {
    it(`${what}: closed at once; close() resolves`, async () => {
      const p = await startPlatform({ worker: false });
      const quiet = await quietConnection(p, bytes);
      try {
        await closeWithin(p, 10_000);
        await quiet.closedByServer;
      } finally {
        quiet.socket.destroy(); // a failed test must not hold the run open (nor the platform, still closing)
      }
    });
  }

  it('an SDK wait that gave up at its deadline, then a cancel: close() resolves at once', async () => {
    const p = await startPlatform({ worker: false });
    const client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
    const job = await client.jobs.create({ model: 'mlp', input: { features: new Array(64).fill(0.5) } });
    // The long poll is aborted at the deadline (no worker: the job stays queued); undici opens a spare connection.
    expect(await client.jobs.wait(job.id, { timeoutMs: 150 }).catch((e: unknown) => e)).to.be.instanceOf(InferTimeoutError);
    expect((await client.jobs.cancel(job.id)).status).to.equal('canceled');
    // Below the 4 s after which undici lets its spare connection go by itself.
    await closeWithin(p, 3_000);
  });
});
