import { platformNow } from '@infer/contract';
import { throttledWarn, type Logger } from '@infer/logger';
import type { FailedVersion, ModelRepository, ModelVersion } from '@infer/models';
import type { ModelControl } from './control-store.js';
import { ControlView } from './control-view.js';
import { advanceRollouts, type ReadCandidateQueue } from './rollout.js';

/** How often a process reads the models' shared state (the generation counter). */
export const CONTROL_TICK_MS = 1000;

/**
 * What the owner does after each look. Hooks see the repository as it is
 * (not what this look changed), so a repository two processes share in one
 * test process, each with its watcher, still gets every owner's attention.
 */
export interface WatcherHooks {
  /** A version is loaded here and marked draining: called on every look until the owner releases it. */
  draining(v: ModelVersion): void | Promise<void>;
  /** After each look, with whether anything changed (state read again, versions loaded, failed or gone). */
  looked(changed: boolean): void | Promise<void>;
  /** A version found in the folder begins to load (it is `repository.loading()` until the look goes on). */
  loading?(name: string, version: string): void;
}

export interface RepositoryWatcherOptions {
  repository: ModelRepository;
  control: ModelControl;
  /** Who this process is in the events log (`worker:<id>`, `gateway:<id>`). */
  actor: string;
  /** MODEL_POLL_SECONDS in ms; 0: the folder is looked at only when the shared state moves (an admin's load). */
  pollMs: number;
  hooks: WatcherHooks;
  logger: Logger;
  /**
   * What a failed look (Redis away, say) logs at warn, with the error's
   * message, at most once in 10 s: what the owner does meanwhile.
   */
  warning: string;
  /** A version's interactive queue as a held rollout step judges it (advanceRollouts). */
  candidateQueue?: ReadCandidateQueue;
}

/** The watcher's options an owner (ModelCatalog, LiveVersions) takes in its own and hands on as they are. */
export type WatchedRepositoryOptions = Pick<RepositoryWatcherOptions, 'repository' | 'control' | 'actor' | 'pollMs' | 'logger' | 'candidateQueue'>;

/**
 * Keeps a process's repository live: once a second it reads the models'
 * shared state (one MGET while nothing changed), and every
 * MODEL_POLL_SECONDS, or at once when an admin asked for a load, it looks at
 * the folder again. Versions
 * that appeared are loaded (those an admin unloaded are not), versions that
 * failed are announced, versions whose folder is gone are marked draining
 * for the whole fleet, and a removed version whose folder is back is
 * undrained. Each look also judges the running rollouts whose step time is
 * up (advanceRollouts).
 *
 * The folder's scan runs beside the looks, not inside one: loading a model
 * can take seconds, and meanwhile the process must still follow routing,
 * unloads and rollouts made elsewhere, and answer its own admin routes.
 */
export class RepositoryWatcher {
  /** The shared state as this process last read it: the owner routes, serves and reports from it. */
  readonly view: ControlView;
  private readonly onError: (err: unknown) => void;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** The folder's scan in progress, and whether another was asked for meanwhile (an admin's load). */
  private scanning: Promise<void> | undefined;
  private scanAgain = false;
  /** Whether a scan changed the repository since the last look (the next one tells the owner). */
  private scanned = false;
  private nextPollAt: number;

  constructor(private readonly o: RepositoryWatcherOptions) {
    this.view = new ControlView(o.control);
    this.onError = throttledWarn(o.logger, o.warning);
    this.nextPollAt = o.pollMs > 0 ? Date.now() + o.pollMs : Infinity;
  }

  /** The first look (the owner's hooks run on what the repository holds now), then one a second (or every MODEL_POLL_SECONDS, when shorter). */
  async start(): Promise<void> {
    await this.tick();
    const every = this.o.pollMs > 0 ? Math.min(CONTROL_TICK_MS, this.o.pollMs) : CONTROL_TICK_MS;
    this.timer ??= setInterval(() => void this.tick(), every);
    this.timer.unref();
  }

  /** One look now; concurrent calls share it. */
  tick(): Promise<void> {
    this.running ??= this.look()
      .catch((err: unknown) => this.onError(err))
      .finally(() => (this.running = undefined));
    return this.running;
  }

  /**
   * A look that begins after this call, for a caller that has just changed
   * the shared state (routing, an unload): one already running may have read
   * the state before the change, so it is waited for and another is taken.
   * It does not wait for a scan of the folder (see `scannedAfresh`).
   */
  async lookAfresh(): Promise<void> {
    await this.running;
    await this.tick();
  }

  /**
   * `lookAfresh`, then the scan of the folder it started or found running
   * (an admin's load asks for one), and the look after it: for a caller that
   * must know how the load went.
   */
  async scannedAfresh(): Promise<void> {
    await this.lookAfresh();
    while (this.scanning) await this.scanning;
    await this.running;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
    while (this.scanning) await this.scanning;
    await this.running;
  }

  private async look(): Promise<void> {
    const { repository: repo, control, hooks } = this.o;
    const view = this.view;
    let changed = await view.refresh(this.known());
    if (this.scanned) {
      this.scanned = false;
      changed = true;
    }
    const now = Date.now();
    const asked = view.takeLoadRequest();
    if (asked || now >= this.nextPollAt) {
      if (this.o.pollMs > 0) this.nextPollAt = now + this.o.pollMs;
      this.startScan(asked);
    }
    for (const v of repo.all()) if (view.isDraining(v.name, v.version)) await hooks.draining(v);
    await hooks.looked(changed);
    // Rollouts move on from every process that looks (one of them moves each step: a compare-and-set);
    // a model with none running costs nothing here.
    const rolling = repo.names().filter((name) => view.of(name).rollout !== null);
    if (rolling.length > 0) await advanceRollouts(control, rolling, platformNow(), this.o.candidateQueue);
  }

  /** Scan the folder beside the looks; one asked for while one runs follows it. */
  private startScan(asked: boolean): void {
    if (this.scanning) {
      this.scanAgain ||= asked;
      return;
    }
    this.scanning = (async () => {
      let retry = asked;
      do {
        this.scanAgain = false;
        await this.scan(retry);
        retry = this.scanAgain;
      } while (retry);
    })()
      .catch((err: unknown) => this.onError(err))
      .finally(() => (this.scanning = undefined));
  }

  private async scan(asked: boolean): Promise<void> {
    const { repository: repo, control, actor, hooks } = this.o;
    const view = this.view;
    // An admin's load tries failed versions again (a fixed file with the same mtime, say).
    if (asked) repo.retryFailed();
    const found = await repo.rescan((name, version) => view.isDraining(name, version), hooks.loading ? { loading: hooks.loading } : {});
    for (const v of found.removed) await control.drain(v.name, v.version, 'removed', actor);
    for (const f of found.failedGone) await control.forgetFailure(f.name, f.version);
    for (const f of found.failed) await this.announceFailed(f);
    for (const v of found.changed) {
      this.o.logger.warn(
        { model: v.name, version: v.version },
        "a loaded version's model.onnx or config.json changed on disk: it keeps running what it loaded, as do the other processes that have it, while processes started from now on read the new files; ship a change as a new version number",
      );
    }
    // A removed version whose folder is back: routable again once ready. Not while the version loaded here is
    // still gone (its folder came back with another file): it drains and is released first, then loads anew.
    for (const name of this.known()) {
      for (const [version, d] of view.of(name).draining) {
        if (d.reason === 'removed' && repo.inFolder(name, version) && !repo.isGone(name, version)) await control.undrain(name, version, actor);
      }
    }
    if (found.removed.length + found.failed.length + found.loaded.length > 0) {
      this.scanned = true;
      // The owner hears of it now (models new to this process read at once), not in a second.
      await this.lookAfresh();
    }
  }

  /**
   * Every model this process has or could load: one with no version loaded any more (all unloaded, or its
   * folder removed) keeps being read, so an admin's load or its folder coming back is seen.
   */
  private known(): string[] {
    return [...new Set([...this.o.repository.names(), ...this.o.repository.folderNames()])];
  }

  private async announceFailed(f: FailedVersion): Promise<void> {
    await this.o.control.announceOnce(f.name, `failed:${f.version}`, this.o.actor, 'version_failed', { version: f.version, error: f.error });
  }
}
