/**
 * Bench section: webhooks never get in the way of inference.
 *
 * Against the real gateway and worker processes (WEBHOOK_ALLOW_PRIVATE=true,
 * so the receiver can sit on loopback), single mlp jobs go through
 * `POST /v1/jobs` with `Prefer: wait`, from 1 and from 16 clients, in rounds
 * that alternate between
 *  - no webhook, and
 *  - a webhook to a receiver that accepts the connection and never answers
 *    (each delivery attempt hangs its full 10 s timeout),
 * so both modes see the same machine noise. Figures: throughput and p50/p99
 * latency of each mode, the ratios with/without (targets: throughput ≥ 0.9×,
 * p50 ≤ 1.1×), and how many deliveries the receiver held, to show they were
 * really being attempted meanwhile.
 *
 * Run alone: `npx tsx bench/sections/webhooks.ts`, or register it in
 * bench/run.ts as a section.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { formatFigure, percentile, startBenchPlatform, startRedis, type Figure } from '../lib/platform.js';

interface Run {
  latencies: number[];
  seconds: number;
}

/** A receiver that reads each request and never answers; counts what it holds. */
async function hangingReceiver(): Promise<{ url: string; held: () => number; close(): Promise<void> }> {
  let held = 0;
  const server = http.createServer((req) => {
    held++;
    req.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    held: () => held,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function clients(base: string, count: number, seconds: number, webhook: string | undefined): Promise<Run> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: count });
  const url = new URL('/v1/jobs', base);
  const body = JSON.stringify({
    model: 'mlp',
    input: { features: Array.from({ length: 64 }, () => Math.random() * 2 - 1) },
    ...(webhook ? { webhook } : {}),
  });
  const post = () =>
    new Promise<number>((resolve, reject) => {
      const req = http.request(
        url,
        {
          method: 'POST',
          agent,
          headers: { authorization: 'Bearer bench-key', 'content-type': 'application/json', prefer: 'wait=30', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const latencies: number[] = [];
  const deadline = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: count }, async () => {
      while (performance.now() < deadline) {
        const t = performance.now();
        const status = await post();
        if (status !== 200) throw new Error(`job answered ${status}`);
        latencies.push(performance.now() - t);
      }
    }),
  );
  agent.destroy();
  return { latencies, seconds: (performance.now() - t0) / 1000 };
}

export async function runWebhooksBench(log: (s: string) => void = console.log, options: { roundSeconds?: number; rounds?: number } = {}): Promise<Figure[]> {
  const roundSeconds = options.roundSeconds ?? 3;
  const rounds = options.rounds ?? 2;
  const figures: Figure[] = [];
  const add = (f: Figure) => {
    figures.push(f);
    log(formatFigure(f));
  };
  const redis = await startRedis();
  const receiver = await hangingReceiver();
  try {
    const platform = await startBenchPlatform(redis.url, { env: { WEBHOOK_ALLOW_PRIVATE: 'true' } });
    try {
      await clients(platform.base, 16, 1, undefined); // warm-up
      for (const count of [1, 16]) {
        log(`\n== webhooks: ${count} client${count > 1 ? 's' : ''}, alternating ${roundSeconds} s rounds without a webhook and with one that hangs`);
        const without: Run = { latencies: [], seconds: 0 };
        const withHook: Run = { latencies: [], seconds: 0 };
        for (let i = 0; i < rounds; i++) {
          for (const [target, hook] of [
            [without, undefined],
            [withHook, receiver.url],
          ] as const) {
            const r = await clients(platform.base, count, roundSeconds, hook);
            target.latencies.push(...r.latencies);
            target.seconds += r.seconds;
          }
        }
        const rate = (r: Run) => r.latencies.length / r.seconds;
        add({ name: `${count}c without webhook: throughput`, value: rate(without), unit: 'jobs/s' });
        add({ name: `${count}c with hanging webhook: throughput`, value: rate(withHook), unit: 'jobs/s' });
        add({ name: `${count}c without webhook: p50 / p99 latency`, value: percentile(without.latencies, 50), unit: `ms / ${percentile(without.latencies, 99).toFixed(2)} ms` });
        add({ name: `${count}c with hanging webhook: p50 / p99 latency`, value: percentile(withHook.latencies, 50), unit: `ms / ${percentile(withHook.latencies, 99).toFixed(2)} ms` });
        const throughputRatio = rate(withHook) / rate(without);
        add({ name: `${count}c throughput ratio with/without`, value: throughputRatio, unit: '×', target: '≥ 0.9', ok: throughputRatio >= 0.9 });
        const p50Ratio = percentile(withHook.latencies, 50) / percentile(without.latencies, 50);
        add({ name: `${count}c p50 latency ratio with/without`, value: p50Ratio, unit: '×', target: '≤ 1.1', ok: p50Ratio <= 1.1 });
      }
      add({ name: 'deliveries the hanging receiver held (attempted meanwhile)', value: receiver.held(), unit: 'requests' });
    } finally {
      // The receiver first: the worker's shutdown then finds no attempt hanging.
      await receiver.close();
      await platform.close();
    }
  } finally {
    await redis.stop();
  }
  return figures;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  runWebhooksBench().then(
    (figures) => process.exit(figures.every((f) => f.ok !== false) ? 0 : 1),
    (err: unknown) => {
      console.error(err);
      process.exit(2);
    },
  );
}
