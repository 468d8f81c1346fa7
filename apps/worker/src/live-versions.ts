import type { Redis } from 'ioredis';
import type { ServedVersion } from '@infer/fleet';
import { RepositoryWatcher, type ControlView, type RolloutStep, type WatchedRepositoryOptions } from '@infer/model-control';
import type { ModelVersion } from '@infer/models';
import { versionHasQueuedWork } from '@infer/job-store';
import { awaitAtMost } from '@infer/lifecycle';

/**
 * How long after a version is marked draining its workers close its queue:
 * gateways see the mark within a second (they read the shared state once a
 * second); the rest covers a request that chose the version just before.
 * A gateway later than that gets 503 from the closed queue, never a lost job.
 */
export const DRAIN_GRACE_MS = 3000;

/** Longest a closing worker waits for the model look in flight (a Redis round trip or two with Redis up). */
const WATCHER_STOP_MS = 1000;

/** The two consumers of one model version (jobs and batch chunks). */
export interface VersionWorkers {
  start(): void;
  /** Stop taking work; resolves once the work in hand has ended. */
  close(): Promise<void>;
}

interface Serving {
  model: ModelVersion;
  workers: VersionWorkers;
  /** Epoch ms this process first saw the version draining; undefined while it serves. */
  drainingSince?: number;
  queueClosed?: boolean;
  /** Set while the version is being let go. */
  releasing?: Promise<void>;
}

export interface LiveVersionsOptions extends WatchedRepositoryOptions {
  /** Commands (queue lengths). */
  redis: Redis;
  prefix: string;
  /** Serve only these models (WORKER_MODELS); absent: every model of the repository. */
  only?: readonly string[];
  /** Whether a batch of this version has not ended (its chunks may still come): its queues are not done yet. */
  batchesUnended(model: ModelVersion): Promise<boolean>;
  /** Build the consumers of a version that was loaded. */
  workersFor(model: ModelVersion): VersionWorkers;
  /** What it serves changed: tell the fleet now rather than at the next heartbeat. */
  changed(): void;
}

/**
 * What a worker serves, kept in step with its repository and the fleet's
 * shared state: a version loaded (at start, or found later by the
 * RepositoryWatcher) is reported `loading` from the moment its load begins
 * (gateways queue its jobs meanwhile), then gets its consumers and is
 * announced `version_loaded`;
 * one that failed to load is reported `failed`; one marked draining keeps
 * its consumers until its queues are empty (its queue closed after
 * DRAIN_GRACE_MS so nothing new arrives), then they stop, its session is
 * released and it is announced `version_unloaded`; one found draining
 * with work still queued for it (this worker started during the drain) is
 * served, draining, the same way. A rollout's figures are
 * recorded only while one runs.
 */
export class LiveVersions {
  readonly view: ControlView;
  private readonly serving = new Map<string, Serving>();
  private readonly watcher: RepositoryWatcher;
  private closed = false;

  constructor(private readonly o: LiveVersionsOptions) {
    this.watcher = new RepositoryWatcher({
      ...o,
      warning: 'model state could not be read or acted on; trying again each second',
      hooks: {
        draining: (v) => this.drainStep(v),
        looked: () => this.reconcile(),
        // Gateways take jobs for a version a live worker is loading (they queue for the moments it takes):
        // tell the fleet now, not at the next heartbeat, which may come after the load.
        loading: (name) => {
          if (!this.o.only || this.o.only.includes(name)) this.o.changed();
        },
      },
    });
    this.view = this.watcher.view;
  }

  /** Serve what the repository holds now, then keep looking. */
  start(): Promise<void> {
    return this.watcher.start();
  }

  /** Look now, and at the folder if a load was asked for (tests; a change made elsewhere is otherwise seen within a second). */
  look(): Promise<void> {
    return this.watcher.scannedAfresh();
  }

  /** The versions being served (draining ones too: their jobs still run here). */
  served(): ModelVersion[] {
    return [...this.serving.values()].map((s) => s.model);
  }

  /** This worker's versions as the fleet's heartbeat reports them. */
  report(): ServedVersion[] {
    const out: ServedVersion[] = [...this.serving.values()].map((s) => ({
      model: s.model.name,
      version: s.model.version,
      state: s.drainingSince === undefined ? 'ready' : 'draining',
    }));
    for (const l of this.o.repository.loading()) {
      if (!this.o.only || this.o.only.includes(l.name)) out.push({ model: l.name, version: l.version, state: 'loading' });
    }
    for (const f of this.o.repository.failed()) {
      if (!this.view.isDraining(f.name, f.version)) out.push({ model: f.name, version: f.version, state: 'failed', error: f.error });
    }
    return out;
  }

  /** The rollout step that jobs ended by `model` count towards now, or null (no rollout runs). */
  rolloutStep(model: string): RolloutStep | null {
    return this.view.of(model).rollout;
  }

  /** Stop looking, and stop every version's consumers (their work in hand ends first). */
  async close(): Promise<void> {
    this.closed = true;
    // A look in flight waits for Redis while it is away (its reads queue offline), and the model workers'
    // close must not start only once Redis is back: each judges by the connection's state then how long
    // to wait for a take in flight, and would give a take stuck on a dropped connection its whole bound.
    // A look that ends after this serves nothing new (reconcile and drainStep stop once closed).
    await awaitAtMost(this.watcher.stop(), WATCHER_STOP_MS);
    await Promise.allSettled([...this.serving.values()].map((s) => s.releasing ?? s.workers.close()));
  }

  /** Serve every loaded version not yet served; a version no longer draining serves as before. */
  private async reconcile(): Promise<void> {
    if (this.closed) return;
    let changed = false;
    for (const model of this.o.repository.all()) {
      // Each announce below waits for Redis: a close landing meanwhile has taken its list of what to stop.
      if (this.closed) break;
      if (this.o.only && !this.o.only.includes(model.name)) continue;
      const key = `${model.name}\0${model.version}`;
      const s = this.serving.get(key);
      if (s) {
        if (s.drainingSince !== undefined && !s.releasing && !this.view.isDraining(model.name, model.version)) {
          // Loaded again by an admin, or its folder is back: undrain reopened its queue, and the
          // version serves on here, so this is where it is loaded again.
          s.drainingSince = undefined;
          // undrain reopened it, unless this worker's close landed after (it read the draining mark before).
          if (s.queueClosed) await this.o.control.reopenQueue(model.name, model.version);
          s.queueClosed = false;
          changed = true;
          await this.o.control.announceOnce(model.name, `loaded:${model.version}`, this.o.actor, 'version_loaded', { version: model.version, state: 'ready' });
        }
        continue;
      }
      if (this.view.isDraining(model.name, model.version)) continue;
      const workers = this.o.workersFor(model);
      workers.start();
      this.serving.set(key, { model, workers });
      changed = true;
      this.o.logger.info({ model: model.name, version: model.version }, 'serving model version');
      if (model.unbatchedBecause) this.o.logger.warn({ model: model.name, version: model.version }, `not batched: ${model.unbatchedBecause}`);
      await this.o.control.announceOnce(model.name, `loaded:${model.version}`, this.o.actor, 'version_loaded', { version: model.version, state: 'ready' });
    }
    if (changed) this.o.changed();
  }

  /** One look at a draining version: close its queue after the grace, let it go once its queues are empty. */
  private async drainStep(model: ModelVersion): Promise<void> {
    if (this.closed) return;
    const key = `${model.name}\0${model.version}`;
    const s = this.serving.get(key);
    if (!s) {
      // Loaded but never served here: it was draining when this worker found it (a worker started, or
      // restarted, during the drain). (A model outside WORKER_MODELS is another consumer's, in tests
      // where processes share a repository.)
      if (this.o.only && !this.o.only.includes(model.name)) return;
      // Jobs or batch chunks accepted before the drain may still be queued for it, with no worker left
      // that serves it: serve it, draining, until they have run (the steps below then let it go).
      const empty = await this.queuesEmpty(model);
      // A close that landed during that read has taken its list of what to stop: start nothing it would miss.
      if (this.closed) return;
      if (!empty) {
        this.serveDraining(model);
        return;
      }
      await this.o.repository.release(model.name, model.version);
      // Let go with no worker ever serving it draining (none was live during the drain): the log's
      // `version_unloaded` with `state: "unloaded"` is this worker's to write, once for the fleet.
      await this.o.control.announceOnce(model.name, `unloaded:${model.version}`, this.o.actor, 'version_unloaded', { version: model.version, state: 'unloaded' });
      return;
    }
    if (s.releasing) return;
    const now = Date.now();
    if (s.drainingSince === undefined) {
      s.drainingSince = now;
      this.o.logger.info({ model: model.name, version: model.version }, 'model version draining: serving its queued jobs, then unloading it');
      this.o.changed();
    }
    if (now - s.drainingSince < DRAIN_GRACE_MS) return;
    if (!s.queueClosed) {
      await this.o.control.closeQueue(model.name, model.version);
      s.queueClosed = true;
      // The draining mark was read before that write: an admin's load may have taken the version back in
      // between (undrain reopened the queue before this close reached it). Read the mark again.
      if (!(await this.o.control.draining(model.name)).has(model.version)) {
        await this.o.control.reopenQueue(model.name, model.version);
        s.queueClosed = false;
        return;
      }
    }
    if (!(await this.queuesEmpty(model))) return;
    s.releasing = (async () => {
      await s.workers.close();
      await this.o.repository.release(model.name, model.version);
      this.serving.delete(key);
      this.o.changed();
      this.o.logger.info({ model: model.name, version: model.version }, 'model version unloaded');
      await this.o.control.announceOnce(model.name, `unloaded:${model.version}`, this.o.actor, 'version_unloaded', { version: model.version, state: 'unloaded' });
    })();
    await s.releasing;
  }

  /** Start the consumers of a version found draining with work still queued for it. */
  private serveDraining(model: ModelVersion): void {
    const workers = this.o.workersFor(model);
    workers.start();
    this.serving.set(`${model.name}\0${model.version}`, { model, workers, drainingSince: Date.now() });
    this.o.logger.info({ model: model.name, version: model.version }, 'model version draining with work still queued: serving it, then unloading it');
    this.o.changed();
  }

  /** No job or batch chunk of the version is waiting or running, on any worker, and no batch of it is still uploading. */
  private async queuesEmpty(model: ModelVersion): Promise<boolean> {
    if (await versionHasQueuedWork(this.o.redis, this.o.prefix, model.name, model.version)) return false;
    return !(await this.o.batchesUnended(model));
  }
}
