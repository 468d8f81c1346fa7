import type { ModelDescription, Rollout, RoutingWeights } from '@infer/contract';
import type { Transport } from './http.js';
import type { ModelEventList, ListModelEventsParams, StartRolloutParams } from './types.js';

export interface CallOptions {
  signal?: AbortSignal;
}

const modelPath = (name: string, rest = '') => `/v1/models/${encodeURIComponent(name)}${rest}`;
const versionPath = (name: string, version: string | number, action: 'load' | 'unload') =>
  modelPath(name, `/versions/${encodeURIComponent(String(version))}/${action}`);
/** The rollouts' path, or one rollout's (an empty id stays a segment, for the transport to refuse). */
const rolloutPath = (name: string, id?: string, rest = '') => modelPath(name, `/rollouts${id === undefined ? '' : `/${encodeURIComponent(id)}`}${rest}`);

/**
 * The models: what a tenant can call (`list`, `get`, with each version's
 * state and the routing in effect), and their lifecycle, which takes an
 * admin key (InferClientOptions.adminKey): routing, loading and unloading
 * versions, rollouts and the events log. An admin call with a tenant's API
 * key is refused with 403 `forbidden`, with no key or an unknown one 401
 * `unauthorized` (docs/rollouts.md).
 */
export class Models {
  readonly #http: Transport;

  constructor(http: Transport) {
    this.#http = http;
  }

  /** Every model the platform serves. */
  async list(options: CallOptions = {}): Promise<ModelDescription[]> {
    const page = await this.#http.json<{ data: ModelDescription[] }>('/v1/models', { signal: options.signal });
    return page.data;
  }

  /** One model with its versions' states and its routing; 404 `model_not_found` if there is none by that name. */
  get(name: string, options: CallOptions = {}): Promise<ModelDescription> {
    return this.#http.json<ModelDescription>(modelPath(name), { signal: options.signal });
  }

  // --- lifecycle (admin key) -------------------------------------------------

  /**
   * Set the routing of the model's unpinned jobs, version → integer weight
   * summing to 100 (`{ '2': 90, '3': 10 }`); every version with a weight
   * above 0 must be `ready`. `null` goes back to the default: the highest
   * ready version takes 100. Answers the model as it is now.
   * 422 `invalid_routing`; 409 `conflict` while a rollout runs.
   */
  setRouting(name: string, weights: RoutingWeights | null, options: CallOptions = {}): Promise<ModelDescription> {
    return this.#http.json<ModelDescription>(modelPath(name, '/routing'), {
      method: 'PUT',
      admin: true,
      json: { weights },
      signal: options.signal,
    });
  }

  /**
   * Ask every gateway and worker to load a version found in the model
   * repository's folder (again, after an `unload`; or now, when they do not
   * poll the folder). Accepted (202): the version is `loading`, then `ready`
   * once a worker has it (one that is `ready` already is answered as it is).
   * 404 `version_not_found` when its model.onnx is not there (`model_not_found`
   * when the model has no folder); 422 `invalid_input`, saying why, when it
   * could not be loaded.
   */
  load(name: string, version: string | number, options: CallOptions = {}): Promise<ModelDescription> {
    return this.#http.json<ModelDescription>(versionPath(name, version, 'load'), { method: 'POST', admin: true, signal: options.signal });
  }

  /**
   * Unload a version, keeping its files: it is `draining` (no new jobs; the
   * jobs already queued for it finish), then gone. Accepted (202).
   * 404 `version_not_found` when it is not loaded.
   */
  unload(name: string, version: string | number, options: CallOptions = {}): Promise<ModelDescription> {
    return this.#http.json<ModelDescription>(versionPath(name, version, 'unload'), { method: 'POST', admin: true, signal: options.signal });
  }

  /**
   * Start moving the model's traffic to `version` step by step (`steps`,
   * percentages ending at 100, each held `step_seconds`), rolled back by the
   * platform if the version's error rate or p50 latency is worse than the
   * limits. 201 with the rollout; 409 `conflict` when one is running.
   */
  startRollout(name: string, params: StartRolloutParams, options: CallOptions = {}): Promise<Rollout> {
    return this.#http.json<Rollout>(rolloutPath(name), { method: 'POST', admin: true, json: params, signal: options.signal });
  }

  /** The model's rollouts, newest first (the running one, if any, is the first). */
  async rollouts(name: string, options: CallOptions = {}): Promise<Rollout[]> {
    const page = await this.#http.json<{ data: Rollout[] }>(rolloutPath(name), { admin: true, signal: options.signal });
    return page.data;
  }

  /** One rollout; 404 `not_found` for an id the model has none of. */
  rollout(name: string, id: string, options: CallOptions = {}): Promise<Rollout> {
    return this.#http.json<Rollout>(rolloutPath(name, id), { admin: true, signal: options.signal });
  }

  /** Stop a running rollout: the routing goes back to what it was before it. 409 `conflict` once it has ended. */
  cancelRollout(name: string, id: string, options: CallOptions = {}): Promise<Rollout> {
    return this.#http.json<Rollout>(rolloutPath(name, id, '/cancel'), { method: 'POST', admin: true, signal: options.signal });
  }

  /**
   * One page of the model's events log, newest first: routing changes,
   * versions loaded, failed and unloaded, rollout steps, each with its actor.
   * `after` (an event id) starts the page after it; `has_more` says whether
   * older ones follow.
   */
  events(name: string, params: ListModelEventsParams = {}, options: CallOptions = {}): Promise<ModelEventList> {
    return this.#http.json<ModelEventList>(modelPath(name, '/events'), {
      admin: true,
      query: { limit: params.limit, after: params.after },
      signal: options.signal,
    });
  }
}
