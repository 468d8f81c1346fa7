import { platformNow } from '@infer/contract';
import { LATENCY_BUCKETS_MS, p50, type ModelControl, type StoredRollout, type VersionFigures, type Weights } from './control-store.js';
import { apportion } from './routing.js';

/**
 * Rollouts: move a model's traffic to a new version step by step, and back
 * by itself when the new version does worse than the ones it replaces.
 *
 *   start ──▶ step 0 (steps[0] % to the candidate) ──(step_seconds, and at
 *             least one job of the candidate's ended in the step)──▶ judge
 *   held (no job of the candidate ended), while the versions it replaces
 *          ended jobs, nothing of the candidate runs, and its oldest queued
 *          job has waited longer than a step ──▶ rolled_back (it takes jobs
 *          and serves none)
 *   judge: candidate error rate > max_error_rate, or its p50 latency over
 *          max_p50_latency_ratio × the replaced versions' ──▶ rolled_back
 *          (routing back as it was before the rollout)
 *   judge: fine ──▶ next step … at 100 ──▶ completed (routing stays 100)
 *   cancel (an admin) ──▶ canceled (routing back as it was)
 *
 * The state lives in Redis (ModelControl); any gateway or worker may judge a
 * step whose time is up (RepositoryWatcher, each second), and the compare-and-set write makes
 * one of them the one that moves it. A rollout therefore survives the
 * process that started it.
 */

/** The routing of a step: the candidate gets `percent`, the versions it replaces share the rest as they did. */
export function stepRouting(r: Pick<StoredRollout, 'version' | 'from'>, percent: number): Weights {
  const others = Object.fromEntries(Object.entries(r.from.routing).filter(([v]) => v !== r.version));
  const out = apportion(others, 100 - percent);
  // Nothing to share the rest with: the candidate takes it all.
  if (Object.keys(out).length === 0) return { [r.version]: 100 };
  if (percent > 0) out[r.version] = percent;
  return out;
}

/** The last finite latency bucket's bound: a median past it is only known to be over it. */
const LAST_BOUND_MS = LATENCY_BUCKETS_MS.filter(Number.isFinite).at(-1)!;

/**
 * A version's figures as events carry them: `p50_ms` the bound of the bucket
 * holding the median (null with no jobs); a median past the last bound has
 * `p50_ms` null and `p50_over_ms` that bound (JSON has no Infinity).
 */
function stepFigures(f: VersionFigures): { succeeded: number; failed: number; p50_ms: number | null; p50_over_ms?: number } {
  const median = p50(f.latency);
  return median === Infinity
    ? { succeeded: f.succeeded, failed: f.failed, p50_ms: null, p50_over_ms: LAST_BOUND_MS }
    : { succeeded: f.succeeded, failed: f.failed, p50_ms: median };
}

/** The verdict on a step whose time is up: roll back (with why), or go on. */
export function judgeStep(r: StoredRollout, candidate: VersionFigures, replaced: VersionFigures): { rollBack: string } | { ok: true } {
  const total = candidate.succeeded + candidate.failed;
  if (total > 0) {
    const rate = candidate.failed / total;
    if (rate > r.max_error_rate) {
      return { rollBack: `error rate ${rate.toFixed(3)} of version ${r.version} (${candidate.failed} of ${total} jobs failed) is over max_error_rate ${r.max_error_rate}` };
    }
  }
  const mine = p50(candidate.latency);
  const theirs = p50(replaced.latency);
  // A median past the last bucket (over 60 s) against a measured one is over any ratio; two such medians say nothing.
  if (mine === Infinity && theirs !== null && Number.isFinite(theirs)) {
    return { rollBack: `p50 latency ratio over ${(LAST_BOUND_MS / Math.max(theirs, 1)).toFixed(2)} of version ${r.version} (over ${LAST_BOUND_MS} ms against ${theirs} ms) is over max_p50_latency_ratio ${r.max_p50_latency_ratio}` };
  }
  if (mine !== null && theirs !== null && theirs > 0 && Number.isFinite(mine) && mine / theirs > r.max_p50_latency_ratio) {
    return { rollBack: `p50 latency ratio ${(mine / theirs).toFixed(2)} of version ${r.version} (${mine} ms against ${theirs} ms) is over max_p50_latency_ratio ${r.max_p50_latency_ratio}` };
  }
  return { ok: true };
}

/** What a held step looks at in the candidate's interactive queue. */
export interface CandidateQueue {
  /** When the oldest job still waiting was queued (epoch ms), or null when none waits. */
  oldestWaitingAt: number | null;
  /** Envelopes a live worker is running (their lock held). */
  running: number;
}

export type ReadCandidateQueue = (model: string, version: string) => Promise<CandidateQueue>;

/** Judge every running rollout whose step time is up (a gateway or worker calls this each second). */
export async function advanceRollouts(control: ModelControl, models: readonly string[], now = platformNow(), candidateQueue?: ReadCandidateQueue): Promise<void> {
  for (const model of models) {
    const r = await control.activeRollout(model);
    if (!r || r.state !== 'running') continue;
    const actor = `rollout:${r.id}`;
    const back = r.from.routing_source === 'default' ? 'default' : r.from.routing;
    // A candidate unloaded (or whose folder was removed) can take no more jobs: its steps would be held for
    // ever, and the rollout with them, keeping the routing locked. It ends rolled back, at once.
    const drained = (await control.draining(model)).get(r.version);
    if (drained) {
      const reason = `version ${r.version} is draining (${drained.reason}): it can take no more jobs`;
      await control.moveRollout(r, { ...r, state: 'rolled_back', ended_at: now, reason }, back, actor, 'rollout_rolled_back', { rollout: r.id, reason });
      continue;
    }
    if (now < r.step_started_at + r.step_seconds * 1000) continue;
    const step = { id: r.id, step: r.step };
    const candidate = await control.figures(model, step, r.version);
    const replaced: VersionFigures = { succeeded: 0, failed: 0, latency: new Map() };
    for (const v of Object.keys(r.from.routing)) {
      if (v === r.version) continue;
      const f = await control.figures(model, step, v);
      replaced.succeeded += f.succeeded;
      replaced.failed += f.failed;
      for (const [le, n] of f.latency) replaced.latency.set(le, (replaced.latency.get(le) ?? 0) + n);
    }
    if (candidate.succeeded + candidate.failed === 0) {
      // A step proves nothing until the candidate has served in it: it is held (a canary without traffic).
      // But a candidate whose jobs wait longer than a step while the versions it replaces serve theirs, with
      // nothing of it running, takes jobs and serves none (its workers gone while others live, or hung past
      // WORKER_MAX_RUN_MS): held, it would keep its share of the traffic waiting for ever. One running a job
      // is serving, if slowly (a run longer than a step): it is judged once that job ends. With nothing
      // ended anywhere (the whole fleet down), it stays held.
      const queue = replaced.succeeded + replaced.failed > 0 ? await candidateQueue?.(model, r.version) : undefined;
      const waitedMs = queue?.oldestWaitingAt == null || queue.running > 0 ? 0 : now - queue.oldestWaitingAt;
      if (waitedMs <= r.step_seconds * 1000) continue;
      const reason = `version ${r.version} ended no job in step ${r.step} while the versions it replaces ended ${replaced.succeeded + replaced.failed}, and its oldest queued job has waited ${(waitedMs / 1000).toFixed(1)} s`;
      const figures = { candidate: stepFigures(candidate), replaced: stepFigures(replaced) };
      await control.moveRollout(r, { ...r, state: 'rolled_back', ended_at: now, reason }, back, actor, 'rollout_rolled_back', { rollout: r.id, reason, figures });
      continue;
    }
    const verdict = judgeStep(r, candidate, replaced);
    const figures = { candidate: stepFigures(candidate), replaced: stepFigures(replaced) };
    if ('rollBack' in verdict) {
      const next: StoredRollout = { ...r, state: 'rolled_back', ended_at: now, reason: verdict.rollBack };
      await control.moveRollout(r, next, back, actor, 'rollout_rolled_back', { rollout: r.id, reason: verdict.rollBack, figures });
    } else if (r.step + 1 >= r.steps.length) {
      const next: StoredRollout = { ...r, state: 'completed', ended_at: now };
      await control.moveRollout(r, next, null, actor, 'rollout_completed', { rollout: r.id, version: r.version, figures });
    } else {
      const nextStep = r.step + 1;
      const weights = stepRouting(r, r.steps[nextStep]!);
      const next: StoredRollout = { ...r, step: nextStep, step_started_at: now };
      await control.moveRollout(r, next, weights, actor, 'rollout_step', { rollout: r.id, step: nextStep, weights, figures });
    }
  }
}
