/**
 * Which Redis commands a platform job costs, by Lua script name: runs the
 * real gateway and worker on a throwaway Redis, records MONITOR while
 * `clients` keep-alive clients post mlp jobs for `seconds`, and prints the
 * commands per job (EVALSHA named by script: BullMQ's, the job store's,
 * the rate limiter's). A diagnostic for "where does the Redis work go", not
 * a benchmark: MONITOR itself slows Redis down.
 *
 *   npx tsx bench/tools/redis-trace.ts [clients=64] [seconds=2]
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { Redis } from 'ioredis';
import { closedLoop } from '../lib/http-load.js';
import * as storeScripts from '../../packages/job-store/src/scripts.js';
import { BENCH_KEY, startBenchPlatform, startRedis } from '../lib/platform.js';

const sha1 = (s: string) => createHash('sha1').update(s).digest('hex');

function scriptNames(): Map<string, string> {
  const names = new Map<string, string>();
  const bull = createRequire(import.meta.url)('bullmq/dist/cjs/scripts/index.js') as Record<string, { name: string; content: string }>;
  for (const s of Object.values(bull)) names.set(sha1(s.content), `bullmq ${s.name}`);
  // The job store's scripts as loaded (their texts interpolate shared pieces, so not their source text).
  for (const [name, value] of Object.entries(storeScripts)) if (typeof value === 'string') names.set(sha1(value), `job-store ${name}`);
  return names;
}

async function main(): Promise<void> {
  const clients = Number(process.argv[2] ?? 64);
  const seconds = Number(process.argv[3] ?? 2);
  const names = scriptNames();
  const redis = await startRedis();
  const platform = await startBenchPlatform(redis.url);
  try {
    const bodies = Array.from({ length: 256 }, () => JSON.stringify({ model: 'mlp', input: { features: Array.from({ length: 64 }, () => Math.random()) } }));
    const load = (s: number) => closedLoop({ url: `${platform.base}/v1/jobs`, clients, seconds: s, maxRequests: 1e6, headers: { authorization: `Bearer ${BENCH_KEY}`, prefer: 'wait=30' }, bodies });
    await load(1); // warm-up
    const monitor = new Redis(redis.url);
    const counts = new Map<string, number>();
    const mon = await monitor.monitor();
    mon.on('monitor', (_time: string, args: string[], source: string) => {
      const [cmd = '', ...rest] = args;
      let name = cmd.toLowerCase();
      // A script we cannot name is labelled by its first key, ids and prefix masked (the rate limiter's, for one).
      const firstKey = (rest[2] ?? '').replace(/^bench-[^:]+/, '…').replace(/[0-9a-f-]{36}|[A-Za-z0-9_-]{22}$/g, '<id>');
      if (name === 'evalsha') name = `evalsha: ${names.get(rest[0] ?? '') ?? `? ${firstKey}`}`;
      else if (name === 'eval') name = `eval: ${firstKey}`;
      if (source.includes('lua')) name = `  (in Lua) ${name}`;
      counts.set(name, (counts.get(name) ?? 0) + 1);
    });
    const run = await load(seconds);
    const jobs = run.answers.filter((a) => a.status === 200).length;
    mon.disconnect();
    monitor.disconnect();
    console.log(`${clients} clients, ${jobs} jobs in ${run.seconds.toFixed(1)} s; Redis commands per job:`);
    for (const [name, n] of [...counts].sort((a, b) => b[1] - a[1])) console.log(`  ${(n / jobs).toFixed(2).padStart(7)}  ${name}`);
  } finally {
    await platform.close();
    await redis.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
