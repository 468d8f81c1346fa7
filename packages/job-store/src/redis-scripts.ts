import type { ChainableCommander, Redis } from 'ioredis';
import { CANCEL_COMMIT, CLAIM_IDEMPOTENCY_KEY, ENQUEUE, FETCH, FINISH, MARK_ENVELOPE_RUNS, MARK_STARTED_SENT, OLDEST_WAITING, READ, RECLAIM_ALLOWANCE, RECONCILE_QUEUED, RECOVER_TAKE, RELEASE_IDEMPOTENCY_KEY, RESTAMP_TAKE, SHORTEN_IDEMPOTENCY_KEY, TAKE_OVER_IDEMPOTENCY_KEY } from './scripts.js';

export type Arg = string | number | Buffer;

/** The scripts as commands of a connection (ioredis sends each by EVALSHA, falling back to EVAL once). */
export type ScriptRedis = Redis & {
  inferEnqueue(...args: Arg[]): Promise<Array<number | string>>;
  inferFetchBuffer(...args: Arg[]): Promise<unknown[]>;
  inferFinish(...args: Arg[]): Promise<number[]>;
  inferReadBuffer(...args: Arg[]): Promise<unknown[]>;
  inferCancelCommitBuffer(...args: Arg[]): Promise<unknown[]>;
  inferClaimIdempotencyKey(key: string, id: string, ttlMs: number, now: number): Promise<string>;
  inferTakeOverIdempotencyKey(key: string, held: string, id: string, ttlMs: number, now: number): Promise<number>;
  inferReleaseIdempotencyKey(key: string, id: string): Promise<number>;
  inferMarkStartedSent(envelope: string): Promise<number>;
  /** MARK_ENVELOPE_RUNS: the number of keys (2 per envelope), the keys, then the arguments. */
  inferMarkEnvelopeRuns(numberOfKeys: number, ...args: Arg[]): Promise<number>;
  inferRestampTake(envelope: string, lock: string, token: string, at: number): Promise<number>;
  inferRecoverTakeBuffer(active: string, base: string, token: string): Promise<unknown[]>;
  inferReconcileQueued(wait: string, queued: string, tenants: string): Promise<number>;
  inferOldestWaiting(wait: string, base: string, most: number): Promise<[number, number]>;
  inferReclaimAllowance(count: string, holder: string, countField: string, field: string, most: number): Promise<number>;
};

/** A pipeline of a connection with the scripts: ioredis adds them to its pipelines too, untyped. */
export type ScriptPipeline = ChainableCommander & {
  inferFetchBuffer(...args: Arg[]): ChainableCommander;
  inferShortenIdempotencyKey(key: string, id: string, ttlMs: number): ChainableCommander;
};

/**
 * The command that ends a micro-batch's jobs. Named here so that a caller
 * which must send it outside ioredis's auto-pipeline (the worker does) names
 * the same command the definition below does.
 */
export const FINISH_COMMAND = 'inferFinish';

/** The command that notes a batch's run as begun, written just before the run (see FINISH_COMMAND). */
export const MARK_RUNS_COMMAND = 'inferMarkEnvelopeRuns';

const COMMANDS = [
  ['inferEnqueue', ENQUEUE, 10],
  ['inferFetch', FETCH, 6],
  [FINISH_COMMAND, FINISH, 3],
  ['inferRead', READ, 2],
  ['inferCancelCommit', CANCEL_COMMIT, 2],
  ['inferClaimIdempotencyKey', CLAIM_IDEMPOTENCY_KEY, 1],
  ['inferReleaseIdempotencyKey', RELEASE_IDEMPOTENCY_KEY, 1],
  ['inferTakeOverIdempotencyKey', TAKE_OVER_IDEMPOTENCY_KEY, 1],
  ['inferShortenIdempotencyKey', SHORTEN_IDEMPOTENCY_KEY, 1],
  ['inferMarkStartedSent', MARK_STARTED_SENT, 1],
  // As many keys as envelopes marked (two each): given with each call.
  [MARK_RUNS_COMMAND, MARK_ENVELOPE_RUNS, undefined],
  ['inferRestampTake', RESTAMP_TAKE, 2],
  ['inferRecoverTake', RECOVER_TAKE, 1],
  ['inferReconcileQueued', RECONCILE_QUEUED, 3],
  ['inferOldestWaiting', OLDEST_WAITING, 1],
  ['inferReclaimAllowance', RECLAIM_ALLOWANCE, 2],
] as const;

/** Define the job scripts on a connection (once; later calls find them there). */
export function withJobScripts(redis: Redis): ScriptRedis {
  for (const [name, lua, numberOfKeys] of COMMANDS) {
    if (!(name in redis)) redis.defineCommand(name, { numberOfKeys, lua });
  }
  return redis as ScriptRedis;
}
