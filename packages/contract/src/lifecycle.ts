import { z } from 'zod';
import { VERSION_RE } from './job.js';
import type { ModelInfo } from './tensor-spec.js';

/**
 * The public shapes of the model lifecycle: version states, routing,
 * rollouts and the events log, as the gateway answers them and the SDK
 * reads them.
 */

/**
 * `loading`: in the repository, no live worker has it loaded yet;
 * `ready`: at least one live worker has it loaded; `failed`: it could not
 * be loaded (`error` says why); `draining`: removed or unloaded, finishing
 * the jobs already accepted for it.
 */
export type VersionState = 'loading' | 'ready' | 'failed' | 'draining';

export interface VersionDetail {
  version: string;
  state: VersionState;
  /** Live workers that have it loaded. */
  workers_ready: number;
  error?: string;
}

/** Routing weights of unpinned jobs: version → integer weight; those in effect sum to 100. */
export type RoutingWeights = Record<string, number>;

/** `explicit`: set by an admin or a rollout; `default`: the highest ready version takes 100. */
export type RoutingSource = 'default' | 'explicit';

/** A model as `GET /v1/models/{name}` answers it: the contract's Model and its lifecycle. */
export interface ModelDescription extends ModelInfo {
  versions_detail: VersionDetail[];
  routing: RoutingWeights;
  routing_source: RoutingSource;
}

export type RolloutState = 'running' | 'completed' | 'rolled_back' | 'canceled';

/** A rollout as the API shows it. */
export interface Rollout {
  id: string;
  model: string;
  version: string;
  /** The routing when it started: what a rollback or a cancel returns to. */
  from: { routing: RoutingWeights; routing_source: RoutingSource };
  steps: number[];
  step_seconds: number;
  max_error_rate: number;
  max_p50_latency_ratio: number;
  /** Index into `steps` of the step in effect. */
  step: number;
  state: RolloutState;
  started_at: string;
  ended_at: string | null;
  reason: string | null;
}

export type ModelEventType =
  | 'routing_changed'
  | 'version_loaded'
  | 'version_failed'
  | 'version_unloaded'
  | 'rollout_started'
  | 'rollout_step'
  | 'rollout_completed'
  | 'rollout_rolled_back'
  | 'rollout_canceled';

/** One entry of a model's events log. */
export interface ModelEvent {
  id: string;
  /** RFC 3339. */
  at: string;
  /** The admin key's name, `rollout:<id>`, or the process that noticed (`worker:<host>:<pid>`). */
  actor: string;
  type: ModelEventType;
  data: Record<string, unknown>;
}

const versionString = z.string().regex(VERSION_RE, 'a version is a positive integer');

/** `PUT /v1/models/{name}/routing`. */
export const SetRoutingBody = z
  .object({
    weights: z.record(z.string(), z.number()).nullable(),
  })
  .strict();
export type SetRoutingBody = z.infer<typeof SetRoutingBody>;

/** `POST /v1/models/{name}/rollouts`. */
export const CreateRolloutBody = z
  .object({
    version: z.union([versionString, z.number().int().positive().transform(String)]),
    steps: z
      .array(z.number().int().min(1).max(100))
      .min(1)
      .max(20)
      .refine((s) => s.every((p, i) => i === 0 || p > s[i - 1]!), 'steps must rise')
      .refine((s) => s[s.length - 1] === 100, 'the last step must be 100'),
    step_seconds: z.number().positive().max(86_400),
    max_error_rate: z.number().min(0).max(1).default(0.01),
    max_p50_latency_ratio: z.number().positive().default(2),
  })
  .strict();
export type CreateRolloutBody = z.infer<typeof CreateRolloutBody>;
