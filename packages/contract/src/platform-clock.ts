/**
 * The one clock every stamp that crosses processes is read on: Redis's.
 *
 * Gateways and workers run on many hosts, whose wall clocks differ (tens of
 * milliseconds under NTP, seconds on a host whose sync broke, a jump when a
 * VM resumes). A job's Cancel-After deadline is set by one gateway and judged
 * by a worker and by every gateway; its `started_at` is stamped by a worker
 * and read against the gateway's `created_at`; a rate-limit window is shared
 * by every gateway; a worker's heartbeat is judged live by the gateways. On
 * each host's own clock, 2 s of skew ended jobs that a worker had taken in
 * time, ran a job past its deadline, gave `completed_at` before `started_at`,
 * put the skew into rollout latencies (which decide rollbacks), and split
 * rate-limit windows. Redis is the one party every process talks to, so each
 * process reads Redis's clock: its own `Date.now()` plus an offset measured
 * with TIME at start and every few seconds after (`keepPlatformClock`).
 *
 * Intervals within one process (timeouts, backoff) stay on the monotonic
 * clock (`performance.now()`), as before.
 */

/** What the clock needs of a Redis client: TIME (ioredis answers [seconds, microseconds]). */
export interface RedisTime {
  time(): Promise<Array<number | string>>;
}

/** Redis's clock less this process's, in whole ms. */
let offsetMs = 0;

/** Now, in epoch ms, on Redis's clock (as this process last measured it). */
export function platformNow(): number {
  return Date.now() + offsetMs;
}

/** The offset platformNow() adds to this process's clock (ms): for logs and tests. */
export function platformClockOffset(): number {
  return offsetMs;
}

/** A measurement whose round trip took longer than this (an event loop held by a model run) is not trusted over a good one. */
const TRUSTED_RTT_MS = 50;
/** How far past a slow reading's own error it must put the known offset before it replaces it. */
const STEP_MARGIN_MS = 10;

/** Whether an offset has been measured in this process yet. */
let measured = false;

/**
 * Redis's clock less this process's (ms), read with TIME, and the round
 * trip it was read in: the reading is placed at the middle of its round
 * trip, the shortest of three (a round trip the event loop held is not one
 * to trust).
 */
export async function measureRedisClockOffset(redis: RedisTime): Promise<{ offsetMs: number; rttMs: number }> {
  let best = { rttMs: Infinity, offsetMs: 0 };
  for (let i = 0; i < 3; i++) {
    const wall = Date.now();
    const before = performance.now();
    const [seconds, micros] = await redis.time();
    const rtt = performance.now() - before;
    const local = wall + rtt / 2;
    if (rtt < best.rttMs) best = { rttMs: rtt, offsetMs: Math.round(Number(seconds) * 1000 + Number(micros) / 1000 - local) };
    if (rtt < 5) break;
  }
  return best;
}

/**
 * Measure the offset now and use it from here on. A reading whose round trip
 * was slow is off by up to half of it: it replaces a known offset only when
 * it proves that one wrong by more than that (this host's clock was stepped
 * while a busy worker's every reading is slow).
 */
export async function syncPlatformClock(redis: RedisTime): Promise<number> {
  const { offsetMs: measuredMs, rttMs } = await measureRedisClockOffset(redis);
  if (!measured || rttMs <= TRUSTED_RTT_MS || Math.abs(measuredMs - offsetMs) > rttMs / 2 + STEP_MARGIN_MS) {
    offsetMs = measuredMs;
    measured = true;
  }
  return offsetMs;
}

/** How often a running app measures the offset again: a clock stepped by NTP or a resumed VM is followed within this. */
export const PLATFORM_CLOCK_SYNC_MS = 5_000;

/**
 * Sync the clock now, then every PLATFORM_CLOCK_SYNC_MS until the returned
 * function is called. A failed measurement (Redis away) keeps the last
 * offset. The timer does not hold the process open.
 */
export async function keepPlatformClock(redis: RedisTime, onError: (err: Error) => void = () => undefined): Promise<() => void> {
  await syncPlatformClock(redis).catch((err: Error) => onError(err));
  // One reading at a time: while Redis is away a connection that queues commands would hold one per beat.
  let reading = false;
  const timer = setInterval(() => {
    if (reading) return;
    reading = true;
    syncPlatformClock(redis)
      .catch((err: Error) => onError(err))
      .finally(() => (reading = false));
  }, PLATFORM_CLOCK_SYNC_MS);
  timer.unref();
  return () => clearInterval(timer);
}
