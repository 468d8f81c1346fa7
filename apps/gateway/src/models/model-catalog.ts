import type { ModelDescription, VersionDetail } from '@infer/contract';
import { AppError, notFound } from '@infer/errors';
import { versionKey, workersHolding, type FleetView, type VersionInFleet } from '@infer/fleet';
import { RepositoryWatcher, WeightedPicker, effectiveRouting, type ControlView, type RoutingSource, type WatchedRepositoryOptions, type Weights } from '@infer/model-control';
import type { ModelVersion } from '@infer/models';

/** What the job and batch routes ask of the models. */
export interface ModelResolver {
  /** The version a job for `name` goes to: `version` when pinned (and routable), else one chosen by the routing. */
  resolve(name: string, version?: string): ModelVersion;
  /** A job `resolve` routed (no version asked for) was not accepted: its pick goes back, so the routing counts accepted jobs. */
  unroute?(name: string, version: string): void;
}

export interface ModelCatalogOptions extends WatchedRepositoryOptions {
  fleet: FleetView;
  /**
   * Let go of a version's session once it is drained (no live worker holds
   * it). Off when the repository is shared with a worker in the same
   * process (tests): the worker releases it.
   */
  releaseDrained: boolean;
  /**
   * Called for every version this gateway may route to, on each look. The
   * gateway has the envelope writer open the version's queue (queueOf), so its
   * depth is read with the others for MAX_QUEUE_DEPTH before any job is sent there.
   */
  onVersion?(v: ModelVersion): void;
  /**
   * Whether a version's queues still hold work (versionHasQueuedWork): a
   * draining version no live worker holds stays listed, draining, while its
   * jobs wait for a worker. Absent, such a version leaves the list at once.
   */
  hasQueuedWork?(model: string, version: string): Promise<boolean>;
}

interface ModelState {
  details: VersionDetail[];
  /** In effect: `stored` less the versions that cannot take jobs, or the default. */
  routing: Weights;
  source: RoutingSource;
  stored: Weights | null;
}

/**
 * The gateway's live view of its models: what its repository holds, what
 * the fleet serves, and the shared routing and draining marks, put
 * together once a second (RepositoryWatcher) so that choosing a version for
 * a job is a lookup and a weighted pick, with no Redis call.
 *
 * A version's state: `draining` while marked so and a live worker still
 * holds it, or work is still queued for it (then gone); `failed` when it
 * could not be loaded here, or no live worker could load it; `ready` when a
 * live worker has it loaded; otherwise `loading`.
 */
export class ModelCatalog implements ModelResolver {
  private unheldWithWork: ReadonlyArray<{ name: string; version: string }> = [];
  /** Every model this gateway has had in its repository, until none of its versions is draining. */
  private readonly seenModels = new Set<string>();
  readonly view: ControlView;
  private readonly watcher: RepositoryWatcher;
  private readonly pickers = new Map<string, WeightedPicker>();
  private state = new Map<string, ModelState>();
  private liveWorkers = 0;

  constructor(private readonly o: ModelCatalogOptions) {
    this.watcher = new RepositoryWatcher({
      ...o,
      warning: 'model state could not be read; routing as last seen',
      hooks: {
        draining: async (v) => {
          const f = (await o.fleet.versions()).get(versionKey(v.name, v.version));
          if (o.releaseDrained && !holds(f)) await o.repository.release(v.name, v.version);
        },
        looked: () => this.recompute(),
      },
    });
    this.view = this.watcher.view;
  }

  /** The first look (state read, routing computed), then one a second. */
  start(): Promise<void> {
    return this.watcher.start();
  }

  /**
   * Read the fleet and the shared state now: a change made through this
   * gateway is in its answers at once. With `scan`, also wait for the look
   * at the folder that an admin's load asked for (how the load went).
   */
  async refresh(options: { scan?: boolean } = {}): Promise<void> {
    await this.o.fleet.refresh().catch(() => undefined);
    await (options.scan ? this.watcher.scannedAfresh() : this.watcher.lookAfresh());
  }

  async close(): Promise<void> {
    await this.watcher.stop();
  }

  private async recompute(): Promise<void> {
    const fleet = await this.o.fleet.versions();
    this.liveWorkers = (await this.o.fleet.live()).length;
    const byModel = new Map<string, Set<string>>();
    const add = (model: string, version: string) => {
      let set = byModel.get(model);
      if (!set) byModel.set(model, (set = new Set()));
      set.add(version);
    };
    for (const v of this.o.repository.all()) add(v.name, v.version);
    for (const f of this.o.repository.failed()) add(f.name, f.version);
    for (const key of fleet.keys()) {
      const [model, version] = key.split('\0') as [string, string];
      // Every model the repository names is in byModel already (its loaded and failed versions).
      if (byModel.has(model)) add(model, version);
    }
    // Draining versions no live worker holds, with work still queued for them (the fleet is down or restarting):
    // listed as draining until it has run, not gone while their jobs wait. (This gateway may have let go of its
    // session already: it takes no jobs for them.)
    const waiting = new Set<string>();
    // A model whose last version this gateway let go of is no longer in the repository, but its queues may
    // still hold jobs (with deadlines to sweep): it is looked at until none of its versions is draining.
    for (const model of byModel.keys()) this.seenModels.add(model);
    for (const model of this.seenModels) {
      let keep = byModel.has(model);
      for (const version of this.view.of(model).draining.keys()) {
        if (holds(fleet.get(versionKey(model, version)))) {
          keep = true;
          continue;
        }
        if (!this.o.hasQueuedWork) continue;
        if (await this.o.hasQueuedWork(model, version).catch(() => true)) {
          keep = true;
          waiting.add(versionKey(model, version));
          byModel.get(model)?.add(version);
        }
      }
      // Gone from the repository, its queues empty and no worker holding it: nothing of it is left to look at.
      if (!keep) this.seenModels.delete(model);
    }
    this.unheldWithWork = [...waiting].map((key) => {
      const [name, version] = key.split('\0') as [string, string];
      return { name, version };
    });
    const next = new Map<string, ModelState>();
    for (const [model, versions] of byModel) {
      const snapshot = this.view.of(model);
      const details: VersionDetail[] = [];
      for (const version of [...versions].sort((a, b) => Number(a) - Number(b))) {
        const key = versionKey(model, version);
        const d = this.detail(model, version, fleet.get(key), snapshot.draining.has(version), waiting.has(key));
        if (d) details.push(d);
      }
      // Only versions loaded here can be routed to from here: their specs validate the jobs.
      const routable = details.filter((d) => this.o.repository.find(model, d.version));
      const { weights, source } = effectiveRouting(
        snapshot.routing,
        routable.map((d) => ({ version: d.version, ready: d.state === 'ready', draining: d.state === 'draining', failed: d.state === 'failed' })),
      );
      next.set(model, { details, routing: weights, source, stored: snapshot.routing });
    }
    this.state = next;
    for (const v of this.o.repository.all()) if (!this.view.isDraining(v.name, v.version)) this.o.onVersion?.(v);
  }

  private detail(model: string, version: string, f: VersionInFleet | undefined, draining: boolean, queued: boolean): VersionDetail | undefined {
    const workers_ready = f?.workersReady ?? 0;
    // A draining version's workers still have it loaded, serving what is queued for it: they count.
    if (draining) return holds(f) || queued ? { version, state: 'draining', workers_ready: workersHolding(f) } : undefined;
    const here = this.o.repository.failed().find((x) => x.name === model && x.version === version);
    if (here) return { version, state: 'failed', workers_ready, error: here.error };
    if (f && f.failed > 0 && f.workersReady === 0 && f.loading === 0) return { version, state: 'failed', workers_ready, error: f.error ?? 'the workers could not load it' };
    if (workers_ready > 0) return { version, state: 'ready', workers_ready };
    return { version, state: 'loading', workers_ready };
  }

  resolve(name: string, version?: string): ModelVersion {
    const state = this.state.get(name);
    if (!state || !this.o.repository.has(name)) throw notFound('model_not_found', `No model named "${name}"`);
    if (version !== undefined) {
      const d = state.details.find((x) => x.version === version);
      const mv = this.o.repository.find(name, version);
      if (!d || !mv || d.state === 'failed' || d.state === 'draining') {
        const why = d?.state === 'failed' ? ` (it failed to load: ${d.error ?? 'unknown error'})` : d?.state === 'draining' ? ' (it is draining)' : '';
        throw notFound('version_not_found', `Model "${name}" has no version "${version}"${why} (versions: ${this.pinnable(name).join(', ') || 'none'})`);
      }
      return mv;
    }
    let picker = this.pickers.get(name);
    if (!picker) this.pickers.set(name, (picker = new WeightedPicker()));
    const chosen = picker.pick(state.routing);
    const mv = chosen === undefined ? undefined : this.o.repository.find(name, chosen);
    if (!mv) throw new AppError(503, 'unavailable', `No version of model "${name}" can take jobs now; try again shortly`, { retryAfterSeconds: 5 });
    return mv;
  }

  unroute(name: string, version: string): void {
    this.pickers.get(name)?.unpick(version);
  }

  /** Versions a job may pin now (ready or loading, loaded here). */
  private pinnable(name: string): string[] {
    return (this.state.get(name)?.details ?? []).filter((d) => (d.state === 'ready' || d.state === 'loading') && this.o.repository.find(name, d.version)).map((d) => d.version);
  }

  /** Every model with a version loaded here, described. */
  list(): ModelDescription[] {
    return this.names().map((n) => this.describe(n));
  }

  names(): string[] {
    return this.o.repository.names().filter((n) => this.o.repository.all().some((v) => v.name === n));
  }

  /** A model as `GET /v1/models/{name}` answers it; 404 `model_not_found` for one with no version loaded here. */
  describe(name: string): ModelDescription {
    const state = this.state.get(name);
    const loaded = this.o.repository.all().filter((v) => v.name === name);
    if (!state || loaded.length === 0) throw notFound('model_not_found', `No model named "${name}"`);
    // The default version is the one with the most traffic (the highest of equals); its specs describe the model.
    const top = Object.entries(state.routing).sort(([va, a], [vb, b]) => b - a || Number(vb) - Number(va))[0]?.[0];
    const def = loaded.find((v) => v.version === top) ?? loaded[loaded.length - 1]!;
    return {
      name,
      versions: this.pinnable(name),
      default_version: def.version,
      inputs: def.inputs,
      outputs: def.outputs,
      max_batch_size: def.maxBatchSize,
      max_delay_ms: def.maxDelayMs,
      versions_detail: state.details,
      routing: state.routing,
      routing_source: state.source,
    };
  }

  /** The routing as stored (an admin's or a rollout's; null for none) that `describe`'s routing was worked out from. */
  storedRouting(name: string): Weights | null {
    return this.state.get(name)?.stored ?? null;
  }

  /** Whether `version` of `name` is `ready` now (an explicit routing may name only those). */
  isReady(name: string, version: string): boolean {
    return this.state.get(name)?.details.some((d) => d.version === version && d.state === 'ready') ?? false;
  }

  /**
   * Draining versions no live worker holds whose queues still hold work, at
   * the last look: this gateway may have let go of them (they are not in
   * `all()`), but their queued jobs still wait, deadlines and all.
   */
  drainingWithQueuedWork(): ReadonlyArray<{ name: string; version: string }> {
    return this.unheldWithWork;
  }

  /** Live workers in the fleet at the last look. */
  get workers(): number {
    return this.liveWorkers;
  }

  /** Loaded versions (draining ones too: their queues still count). */
  all(): ModelVersion[] {
    return this.o.repository.all();
  }
}

/** A live worker still holds the version, in any state. */
function holds(f: VersionInFleet | undefined): boolean {
  return f !== undefined && f.workersReady + f.loading + f.draining + f.failed > 0;
}
