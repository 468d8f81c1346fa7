/**
 * CPU time of processes, to tell where the cycles of a run went. On a
 * machine with few cores the throughput of the platform is bounded by the
 * CPU its processes (gateway, worker, Redis, and the load generator itself)
 * spend per job, so "CPU ms per job, per process" is the breakdown to read.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

let clockTicks: number | undefined;

function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** User + system CPU ms of a process (all its threads) from /proc; NaN where /proc cannot tell. */
export function processCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may hold spaces: fields count from after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return ((utime + stime) * 1000) / ticksPerSecond();
  } catch {
    return NaN;
  }
}

/**
 * Times a process's main thread (a Node process's event loop) went to sleep
 * and was woken again: its voluntary context switches, from /proc (the
 * /proc/<pid>/status of a process is its main thread's). Each one costs a
 * trip through the kernel and the scheduler, so where work comes one job at
 * a time, wake-ups per job say much of what the CPU per job is spent on.
 * NaN where /proc cannot tell.
 */
export function mainThreadWakeups(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/^voluntary_ctxt_switches:\s+(\d+)$/m.exec(status)?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

/** This process's CPU ms (every thread: the event loop, libuv, ONNX Runtime's pool). */
export function ownCpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

export interface RedisSample {
  /** used_cpu_user + used_cpu_sys, in ms. */
  cpuMs: number;
  commands: Map<string, { calls: number; usec: number }>;
}

/** INFO cpu and INFO commandstats. Commands that Lua scripts call are counted under their own names too. */
export async function sampleRedis(redis: Redis): Promise<RedisSample> {
  const [cpu, stats] = await Promise.all([redis.info('cpu'), redis.info('commandstats')]);
  const num = (name: string) => Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(cpu)?.[1] ?? NaN);
  const commands = new Map<string, { calls: number; usec: number }>();
  for (const m of stats.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    commands.set(m[1]!, { calls: Number(m[2]), usec: Number(m[3]) });
  }
  return { cpuMs: (num('used_cpu_user') + num('used_cpu_sys')) * 1000, commands };
}

export interface RedisDelta {
  cpuMs: number;
  calls: number;
  /** Per command, most Redis time first. */
  commands: Array<{ name: string; calls: number; usec: number }>;
}

export function redisDelta(before: RedisSample, after: RedisSample): RedisDelta {
  const commands: RedisDelta['commands'] = [];
  for (const [name, a] of after.commands) {
    const b = before.commands.get(name) ?? { calls: 0, usec: 0 };
    if (a.calls > b.calls && name !== 'info') commands.push({ name, calls: a.calls - b.calls, usec: a.usec - b.usec });
  }
  commands.sort((x, y) => y.usec - x.usec);
  return { cpuMs: after.cpuMs - before.cpuMs, calls: commands.reduce((s, c) => s + c.calls, 0), commands };
}

/** "evalsha 3.0 (41 µs), hset 2.0 (3 µs), …": calls and Redis time per job, top `n` by time. */
export function describeRedisPerJob(delta: RedisDelta, jobs: number, n = 6): string {
  return delta.commands
    .slice(0, n)
    .map((c) => `${c.name} ${(c.calls / jobs).toFixed(1)} (${(c.usec / jobs).toFixed(0)} µs)`)
    .join(', ');
}
