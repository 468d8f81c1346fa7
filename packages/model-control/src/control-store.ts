import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { interactiveKeys, type ModelEvent, type ModelEventType, type Rollout, type RolloutState, type RoutingSource, type RoutingWeights, platformNow } from '@infer/contract';

/**
 * What every gateway and worker must agree on about a model, kept in Redis
 * so that any of them can change it and all of them see the change within
 * a second: the explicit routing of unpinned jobs, the versions draining
 * (removed from the repository or unloaded by an admin), the events log of
 * every change, rollouts, and the per-version figures a rollout judges by.
 *
 * Every change bumps one generation counter, in a write after the change
 * itself; processes read it once a second and reload the models' state
 * when it moved, and every so often anyway (ControlView). A model's keys
 * share the hash tag `{m:<name>}`, so its scripts (a rollout's
 * compare-and-set) and transactions stay in one slot.
 */

export type EventType = ModelEventType;
/** Routing weights: version → integer weight, summing to 100. */
export type Weights = RoutingWeights;
export type { ModelEvent, RoutingSource, RolloutState };

export interface DrainingVersion {
  /** Epoch ms since when. */
  since: number;
  /** Removed from the repository's folder, or unloaded by an admin (files kept). */
  reason: 'removed' | 'unloaded';
}

/**
 * A rollout as stored: the API's Rollout (renderRollout) with its times in
 * epoch ms, and when the step in effect began, which the API does not show.
 */
export interface StoredRollout extends Omit<Rollout, 'started_at' | 'ended_at'> {
  /** Epoch ms. */
  started_at: number;
  step_started_at: number;
  ended_at: number | null;
}

/** Jobs a version ended in a window, and how long they took end to end. */
export interface VersionFigures {
  succeeded: number;
  failed: number;
  /** Latency histogram: bucket upper bound (ms) → jobs. */
  latency: Map<number, number>;
}

/** Upper bounds (ms) of the latency histogram a rollout's p50 is read from. */
export const LATENCY_BUCKETS_MS = [1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000, 10_000, 30_000, 60_000, Infinity];

/** How long a step's figures are kept after their last write: longer than any step (step_seconds ≤ 1 day). */
const FIGURES_TTL_MS = 25 * 3600 * 1000;
/** Events kept per model, newest first. */
const EVENTS_KEPT = 1000;
/** Rollouts remembered per model. */
const ROLLOUTS_KEPT = 100;

const modelKeys = (prefix: string, model: string) => {
  const base = `${prefix}:{m:${model}}`;
  return {
    routing: `${base}:routing`,
    draining: `${base}:draining`,
    events: `${base}:events`,
    announced: `${base}:announced`,
    activeRollout: `${base}:rollout`,
    rollouts: `${base}:rollouts`,
    rollout: (id: string) => `${base}:rollout:${id}`,
    /** Hash: the jobs a version ended during one step of a rollout (`ok`, `failed`, `le:<ms>`). */
    stepFigures: (id: string, step: number, version: string) => `${base}:rollout:${id}:step:${step}:${version}`,
  };
};

/** Lua: `iso8601(ms)`, epoch milliseconds as `Date.prototype.toISOString` writes them (exported for its test). */
export const ISO8601_LUA = `
local function iso8601(ms)
  local s = math.floor(ms / 1000)
  local days = math.floor(s / 86400)
  local sod = s - days * 86400
  -- Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d, math.floor(sod / 3600), math.floor(sod % 3600 / 60), sod % 60, ms % 1000)
end
`;

/**
 * Lua that pushes a model event (its JSON with `"at":""`) onto the events list, newest first, kept to
 * `kept`. `at` is stamped here from Redis's clock, as the event is written: the list's order is the
 * order of the writes, so the times read down it never go back up, however many processes write at
 * once or however their clocks differ.
 */
const PUSH_EVENT = `${ISO8601_LUA}
local function pushEvent(key, json, kept)
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local at = string.find(json, '"at":""', 1, true)
  if at then json = string.sub(json, 1, at + 5) .. iso8601(ms) .. string.sub(json, at + 6) end
  redis.call('LPUSH', key, json)
  redis.call('LTRIM', key, 0, kept - 1)
end
`;

/** KEYS[1] a model's events. ARGV[1] the event (JSON, `at` empty), ARGV[2] events kept. */
const RECORD_EVENT = `${PUSH_EVENT}
pushEvent(KEYS[1], ARGV[1], tonumber(ARGV[2]))
return 1
`;

/**
 * KEYS[1] a model's active-rollout key, KEYS[2] the rollout, KEYS[3] its rollouts list, KEYS[4] its routing,
 * KEYS[5] its events. ARGV[1] 'start' or the step the rollout must be at, ARGV[2] the rollout's new JSON,
 * ARGV[3] the routing to set (JSON weights; '' leaves it, 'default' clears it), ARGV[4] the event (JSON),
 * ARGV[5] events kept, ARGV[6] rollouts kept, ARGV[7] (a start) the stored routing `from` was worked out
 * from (JSON weights; '' for none).
 * One step of a rollout's life in one atomic write: its state, the routing it implies and the event that
 * says so; a start also forgets the rollouts past the kept ones, state and all. 'start' needs no rollout
 * running for the model (else 0) and the routing still the one it starts from, `from` (else 2: an admin
 * changed it since it was read); a move needs the rollout still running at the step the caller saw (of the
 * processes that try, one moves it; else 0). Returns 1 when written.
 */
const WRITE_ROLLOUT = `${PUSH_EVENT}
local r = cjson.decode(ARGV[2])
if ARGV[1] == 'start' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
  -- The stored routing must still be the one read when the rollout's from was worked out from it.
  local stored = redis.call('HGETALL', KEYS[4])
  local read = ARGV[7] == '' and {} or cjson.decode(ARGV[7])
  local n = 0
  for _ in pairs(read) do n = n + 1 end
  if #stored ~= 2 * n then return 2 end
  for i = 1, #stored, 2 do
    if tonumber(read[stored[i]]) ~= tonumber(stored[i + 1]) then return 2 end
  end
  redis.call('SET', KEYS[1], r.id)
  redis.call('LPUSH', KEYS[3], r.id)
  -- The rollouts that fall off the list go with their state (KEYS[2] is <base><id>: the same base, their ids).
  local kept = tonumber(ARGV[6])
  local base = string.sub(KEYS[2], 1, #KEYS[2] - #r.id)
  for _, old in ipairs(redis.call('LRANGE', KEYS[3], kept, -1)) do redis.call('DEL', base .. old) end
  redis.call('LTRIM', KEYS[3], 0, kept - 1)
else
  local current = redis.call('GET', KEYS[2])
  if not current then return 0 end
  local c = cjson.decode(current)
  if c.state ~= 'running' or tostring(c.step) ~= ARGV[1] then return 0 end
  if r.state ~= 'running' and redis.call('GET', KEYS[1]) == r.id then redis.call('DEL', KEYS[1]) end
end
redis.call('SET', KEYS[2], ARGV[2])
if ARGV[3] == 'default' then
  redis.call('DEL', KEYS[4])
elseif ARGV[3] ~= '' then
  redis.call('DEL', KEYS[4])
  for version, weight in pairs(cjson.decode(ARGV[3])) do redis.call('HSET', KEYS[4], version, weight) end
end
pushEvent(KEYS[5], ARGV[4], tonumber(ARGV[5]))
return 1
`;

/**
 * KEYS[1] a model's active-rollout key, KEYS[2] its routing, KEYS[3] its events. ARGV[1] the weights
 * (JSON; '' for the default routing), ARGV[2] the event (JSON), ARGV[3] events kept. A hand routing change,
 * refused (0) while a rollout runs: checked in the same step as the write, so a rollout started a moment
 * before is never overwritten (its routing is its steps'). Returns 1 when written.
 */
const SET_ROUTING = `${PUSH_EVENT}
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
if ARGV[1] ~= '' then
  local w = cjson.decode(ARGV[1])
  for version, weight in pairs(w) do redis.call('HSET', KEYS[2], version, weight) end
end
pushEvent(KEYS[3], ARGV[2], tonumber(ARGV[3]))
return 1
`;

type ScriptRedis = Redis & {
  inferWriteRollout(...args: string[]): Promise<number>;
  inferSetRouting(activeRollout: string, routing: string, events: string, weights: string, event: string, kept: number): Promise<number>;
  inferRecordEvent(events: string, event: string, kept: number): Promise<number>;
};

export class ModelControl {
  private readonly redis: ScriptRedis;
  private readonly generationKey: string;
  private readonly loadsKey: string;

  constructor(
    redis: Redis,
    private readonly prefix: string,
  ) {
    if (!('inferWriteRollout' in redis)) redis.defineCommand('inferWriteRollout', { numberOfKeys: 5, lua: WRITE_ROLLOUT });
    if (!('inferSetRouting' in redis)) redis.defineCommand('inferSetRouting', { numberOfKeys: 3, lua: SET_ROUTING });
    if (!('inferRecordEvent' in redis)) redis.defineCommand('inferRecordEvent', { numberOfKeys: 1, lua: RECORD_EVENT });
    this.redis = redis as ScriptRedis;
    // One hash tag for both: they are read by one MGET and bumped together in one MULTI.
    this.generationKey = `${prefix}:{models}:generation`;
    this.loadsKey = `${prefix}:{models}:load-requests`;
  }

  /**
   * The number every change bumps (a process re-reads a model's state when
   * it moves), and the number only load requests bump (a process then looks
   * at its repository folder, even with polling off), in one read.
   */
  async generation(): Promise<{ state: number; loads: number }> {
    const [state, loads] = await this.redis.mget(this.generationKey, this.loadsKey);
    return { state: Number(state ?? 0), loads: Number(loads ?? 0) };
  }

  private async bump(): Promise<void> {
    await this.redis.incr(this.generationKey);
  }

  /** Ask every process to look at its repository folder now (and try failed versions again). */
  private async bumpLoads(): Promise<void> {
    await this.redis.multi().incr(this.loadsKey).incr(this.generationKey).exec();
  }

  // --- routing -------------------------------------------------------------

  /** The explicit routing of a model, or null for the default (the highest ready version). */
  async routing(model: string): Promise<Weights | null> {
    const h = await this.redis.hgetall(modelKeys(this.prefix, model).routing);
    const entries = Object.entries(h);
    return entries.length ? Object.fromEntries(entries.map(([v, w]) => [v, Number(w)])) : null;
  }

  /**
   * Set (or, with null, clear) a model's explicit routing, as `actor`; recorded in its events. Resolves
   * false, writing nothing, while a rollout of the model runs (its routing is the rollout's).
   */
  async setRouting(model: string, weights: Weights | null, actor: string, extra: Record<string, unknown> = {}): Promise<boolean> {
    const k = modelKeys(this.prefix, model);
    const event = this.event(actor, 'routing_changed', { weights, ...extra });
    const written = await this.redis.inferSetRouting(k.activeRollout, k.routing, k.events, weights ? JSON.stringify(weights) : '', event, EVENTS_KEPT);
    if (written !== 1) return false;
    await this.bump();
    return true;
  }

  // --- snapshot ------------------------------------------------------------

  /** What a process needs of a model to route and serve it: one round trip, and one more while a rollout runs. */
  async snapshot(model: string): Promise<ModelSnapshot> {
    const k = modelKeys(this.prefix, model);
    const [[e1, routing], [e2, draining], [e3, active]] = (await this.redis.pipeline().hgetall(k.routing).hgetall(k.draining).get(k.activeRollout).exec()) as Array<[Error | null, unknown]> as [
      [Error | null, Record<string, string>],
      [Error | null, Record<string, string>],
      [Error | null, string | null],
    ];
    const err = e1 ?? e2 ?? e3;
    if (err) throw err;
    const explicit = Object.entries(routing);
    const r = active === null ? null : await this.rollout(model, active);
    return {
      routing: explicit.length ? Object.fromEntries(explicit.map(([v, w]) => [v, Number(w)])) : null,
      draining: new Map(Object.entries(draining).map(([v, json]) => [v, JSON.parse(json) as DrainingVersion])),
      rollout: r && r.state === 'running' ? { id: r.id, step: r.step } : null,
    };
  }

  // --- versions ----------------------------------------------------------------

  /** Versions draining: not routed to, unloaded by the workers once their queues are empty. */
  async draining(model: string): Promise<Map<string, DrainingVersion>> {
    const h = await this.redis.hgetall(modelKeys(this.prefix, model).draining);
    return new Map(Object.entries(h).map(([v, json]) => [v, JSON.parse(json) as DrainingVersion]));
  }

  /**
   * Mark a version draining (first caller wins; later calls change nothing),
   * recorded as `version_unloaded` with `state: "draining"`; the workers
   * announce `state: "unloaded"` once its jobs are done. True when this call
   * marked it.
   */
  async drain(model: string, version: string, reason: DrainingVersion['reason'], actor: string): Promise<boolean> {
    const k = modelKeys(this.prefix, model);
    const marked = await this.redis.hsetnx(k.draining, version, JSON.stringify({ since: platformNow(), reason } satisfies DrainingVersion));
    if (marked) {
      await this.record(model, actor, 'version_unloaded', { version, state: 'draining', reason });
      await this.bump();
    }
    return marked === 1;
  }

  /**
   * A version is back (loaded again by an admin, or its folder reappeared):
   * its queue reopens, and it is routable once a worker has it ready. Its
   * load, failure and unload are announced afresh.
   */
  async undrain(model: string, version: string, actor: string): Promise<void> {
    const k = modelKeys(this.prefix, model);
    const [[, removed]] = (await this.redis.multi().hdel(k.draining, version).srem(k.announced, `unloaded:${version}`, `loaded:${version}`, `failed:${version}`).exec()) as [[Error | null, number]];
    await this.reopenQueue(model, version);
    if (removed) await this.record(model, actor, 'version_loaded', { version, state: 'loading' });
    // Released already, it must be loaded again: every process looks at its folder.
    await this.bumpLoads();
  }

  /**
   * A failed version's folder is gone: the next version there that fails is
   * announced (`version_failed`) afresh. Whichever process sees it gone first
   * clears it; the others find nothing to clear.
   */
  async forgetFailure(model: string, version: string): Promise<void> {
    await this.redis.srem(modelKeys(this.prefix, model).announced, `failed:${version}`);
  }

  /**
   * Ask every process to load a version found in its repository folder
   * (polling may be off, or it failed before): recorded, and every process
   * looks at its folder again, trying failed versions afresh.
   */
  async requestLoad(model: string, version: string, actor: string): Promise<void> {
    const k = modelKeys(this.prefix, model);
    await this.redis.srem(k.announced, `loaded:${version}`, `failed:${version}`);
    await this.record(model, actor, 'version_loaded', { version, state: 'loading' });
    await this.bumpLoads();
  }

  /**
   * Refuse new jobs for a draining version in the enqueue script itself
   * (its `closed` mark), so that no gateway, however stale its view, adds a
   * job to a queue its workers are about to stop reading.
   */
  async closeQueue(model: string, version: string): Promise<void> {
    await this.redis.hset(interactiveKeys(this.prefix, model, version).meta, 'closed', String(platformNow()));
  }

  /** Take a queue's close back (its version is no longer draining): the enqueue accepts envelopes again. */
  async reopenQueue(model: string, version: string): Promise<void> {
    await this.redis.hdel(interactiveKeys(this.prefix, model, version).meta, 'closed');
  }

  /** Whether the version's queue is closed (it is draining, past its grace): no new work may be added to it. */
  async isQueueClosed(model: string, version: string): Promise<boolean> {
    return (await this.redis.hexists(interactiveKeys(this.prefix, model, version).meta, 'closed')) === 1;
  }

  /** Record an event once per version and kind (`loaded:3`), however many processes notice it. */
  async announceOnce(model: string, key: string, actor: string, type: EventType, data: Record<string, unknown>): Promise<boolean> {
    const k = modelKeys(this.prefix, model);
    if (!(await this.redis.sadd(k.announced, key))) return false;
    await this.record(model, actor, type, data);
    await this.bump();
    return true;
  }

  // --- events ----------------------------------------------------------------

  /** An event's JSON, `at` left empty: the script that writes it stamps it from Redis's clock (PUSH_EVENT). */
  private event(actor: string, type: EventType, data: Record<string, unknown>): string {
    const e: ModelEvent = { id: `evt_${Date.now().toString(36)}${randomBytes(6).toString('hex')}`, at: '', actor, type, data };
    return JSON.stringify(e);
  }

  async record(model: string, actor: string, type: EventType, data: Record<string, unknown>): Promise<void> {
    await this.redis.inferRecordEvent(modelKeys(this.prefix, model).events, this.event(actor, type, data), EVENTS_KEPT);
  }

  /** A model's events, newest first: `limit` of them after the event `after` (null when `after` is unknown). */
  async events(model: string, limit: number, after?: string): Promise<{ data: ModelEvent[]; hasMore: boolean } | null> {
    const all = (await this.redis.lrange(modelKeys(this.prefix, model).events, 0, -1)).map((s) => JSON.parse(s) as ModelEvent);
    let from = 0;
    if (after !== undefined) {
      const i = all.findIndex((e) => e.id === after);
      if (i < 0) return null;
      from = i + 1;
    }
    return { data: all.slice(from, from + limit), hasMore: all.length > from + limit };
  }

  // --- rollouts ----------------------------------------------------------------

  /**
   * Start a rollout, with the routing of its first step and its event, in
   * one write. Nothing is written when one is running for the model
   * ('running'), or when the stored routing is no longer `read`, the one
   * its `from` was worked out from ('routing_changed': read it again).
   */
  async startRollout(r: StoredRollout, routing: Weights, actor: string, read: Weights | null): Promise<'started' | 'running' | 'routing_changed'> {
    const written = await this.writeRolloutScript('start', r, routing, actor, 'rollout_started', { rollout: r.id, version: r.version, steps: r.steps, step_seconds: r.step_seconds, weights: routing }, read);
    return written === 1 ? 'started' : written === 2 ? 'routing_changed' : 'running';
  }

  async activeRollout(model: string): Promise<StoredRollout | null> {
    const id = await this.redis.get(modelKeys(this.prefix, model).activeRollout);
    return id ? this.rollout(model, id) : null;
  }

  async rollout(model: string, id: string): Promise<StoredRollout | null> {
    const json = await this.redis.get(modelKeys(this.prefix, model).rollout(id));
    return json ? (JSON.parse(json) as StoredRollout) : null;
  }

  async rollouts(model: string): Promise<StoredRollout[]> {
    const ids = await this.redis.lrange(modelKeys(this.prefix, model).rollouts, 0, -1);
    const out: StoredRollout[] = [];
    for (const id of ids) {
      const r = await this.rollout(model, id);
      if (r) out.push(r);
    }
    return out;
  }

  /**
   * Move a running rollout on from the step `current` is at, with the
   * routing that implies (null: back to `from`'s; 'default' clears it) and
   * its event, in one compare-and-set write: of the processes that try, one
   * moves it. True when this call moved it.
   */
  async moveRollout(current: StoredRollout, next: StoredRollout, routing: Weights | 'default' | null, actor: string, type: EventType, data: Record<string, unknown>): Promise<boolean> {
    return this.writeRollout(String(current.step), next, routing, actor, type, data);
  }

  private async writeRollout(expect: string, r: StoredRollout, routing: Weights | 'default' | null, actor: string, type: EventType, data: Record<string, unknown>): Promise<boolean> {
    return (await this.writeRolloutScript(expect, r, routing, actor, type, data)) === 1;
  }

  /** WRITE_ROLLOUT: 1 written (the generation bumped), 0 refused, 2 (a start) the routing is no longer `r.from`'s. */
  private async writeRolloutScript(expect: string, r: StoredRollout, routing: Weights | 'default' | null, actor: string, type: EventType, data: Record<string, unknown>, read: Weights | null = null): Promise<number> {
    const k = modelKeys(this.prefix, r.model);
    const written = await this.redis.inferWriteRollout(
      k.activeRollout,
      k.rollout(r.id),
      k.rollouts,
      k.routing,
      k.events,
      expect,
      JSON.stringify(r),
      routing === null ? '' : routing === 'default' ? 'default' : JSON.stringify(routing),
      this.event(actor, type, data),
      String(EVENTS_KEPT),
      String(ROLLOUTS_KEPT),
      read ? JSON.stringify(read) : '',
    );
    if (written === 1) await this.bump();
    return written;
  }

  // --- figures ----------------------------------------------------------------

  /**
   * Count jobs a version ended during a rollout's step (with their
   * end-to-end latencies): what the step is judged by. Workers call it only
   * while a rollout runs, so it costs nothing otherwise.
   */
  async recordFigures(model: string, step: RolloutStep, version: string, succeeded: number, failed: number, latenciesMs: readonly number[]): Promise<void> {
    const key = modelKeys(this.prefix, model).stepFigures(step.id, step.step, version);
    const fields: Record<string, number> = {};
    if (succeeded) fields.ok = succeeded;
    if (failed) fields.failed = failed;
    for (const ms of latenciesMs) {
      const b = LATENCY_BUCKETS_MS.find((le) => ms <= le)!;
      const f = `le:${b}`;
      fields[f] = (fields[f] ?? 0) + 1;
    }
    const tx = this.redis.multi();
    for (const [f, n] of Object.entries(fields)) tx.hincrby(key, f, n);
    await tx.pexpire(key, FIGURES_TTL_MS).exec();
  }

  /** What a version ended during a rollout's step. */
  async figures(model: string, step: RolloutStep, version: string): Promise<VersionFigures> {
    const out: VersionFigures = { succeeded: 0, failed: 0, latency: new Map() };
    const h = await this.redis.hgetall(modelKeys(this.prefix, model).stepFigures(step.id, step.step, version));
    for (const [f, v] of Object.entries(h)) {
      if (f === 'ok') out.succeeded += Number(v);
      else if (f === 'failed') out.failed += Number(v);
      else if (f.startsWith('le:')) {
        const le = f === 'le:Infinity' ? Infinity : Number(f.slice(3));
        out.latency.set(le, (out.latency.get(le) ?? 0) + Number(v));
      }
    }
    return out;
  }
}

/** A rollout's step: what the jobs ended while it is in effect count towards. */
export interface RolloutStep {
  id: string;
  step: number;
}

/** What a process holds of a model's shared state (ModelControl.snapshot). */
export interface ModelSnapshot {
  /** The explicit routing, or null for the default. */
  routing: Weights | null;
  draining: Map<string, DrainingVersion>;
  /** The step of the rollout running, if one is: workers record the figures it is judged by. */
  rollout: RolloutStep | null;
}

/** A stored rollout as the API shows it (RFC 3339 times). */
export function renderRollout(r: StoredRollout): Rollout {
  return {
    id: r.id,
    model: r.model,
    version: r.version,
    from: r.from,
    steps: r.steps,
    step_seconds: r.step_seconds,
    max_error_rate: r.max_error_rate,
    max_p50_latency_ratio: r.max_p50_latency_ratio,
    step: r.step,
    state: r.state,
    started_at: new Date(r.started_at).toISOString(),
    ended_at: r.ended_at === null ? null : new Date(r.ended_at).toISOString(),
    reason: r.reason,
  };
}

/** The median of a latency histogram: the upper bound of the bucket holding the middle job (null without jobs). */
export function p50(latency: ReadonlyMap<number, number>): number | null {
  const total = [...latency.values()].reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  let seen = 0;
  for (const le of LATENCY_BUCKETS_MS) {
    seen += latency.get(le) ?? 0;
    if (seen * 2 >= total) return le;
  }
  return Infinity;
}

/** Rollout ids: short, random, safe in keys and URLs. */
export const newRolloutId = (): string => `ro_${randomBytes(9).toString('base64url')}`;
