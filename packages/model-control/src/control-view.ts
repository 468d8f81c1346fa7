import type { ModelControl, ModelSnapshot } from './control-store.js';

const EMPTY: ModelSnapshot = { routing: null, draining: new Map(), rollout: null };

/** How often a view reads every model's state whether or not the generation moved. */
export const RESYNC_MS = 30_000;

/**
 * A process's copy of the models' shared state, read again only when the
 * generation counter moved: one MGET a second (the generation and the
 * load-requests counter) while nothing changes, so
 * every gateway and worker sees a change within a second at no cost per
 * request.
 *
 * A change bumps the counter in a second write after the change itself
 * (the counter and a model's keys have different hash tags: no one
 * transaction holds both), so a process that dies between the two leaves
 * the change unannounced. Every RESYNC_MS the view therefore reads every
 * model anyway: such a change is seen within that, not at the next bump.
 */
export class ControlView {
  private generation = -1;
  private loads = -1;
  /** Set when a load was asked for since the last `takeLoadRequest()`. */
  private loadRequested = false;
  private readonly models = new Map<string, ModelSnapshot>();
  private resyncedAt = performance.now();

  constructor(
    private readonly control: ModelControl,
    private readonly resyncMs = RESYNC_MS,
  ) {}

  /**
   * Read the generation, and every model's state when it moved (or a model
   * is new to this view). Resolves true when anything was read again.
   */
  async refresh(names: readonly string[]): Promise<boolean> {
    const { state: generation, loads } = await this.control.generation();
    // The first read is no request: the process has just looked at its folder.
    if (this.loads >= 0 && loads !== this.loads) this.loadRequested = true;
    this.loads = loads;
    const unseen = names.filter((n) => !this.models.has(n));
    const resync = performance.now() - this.resyncedAt >= this.resyncMs;
    if (generation === this.generation && unseen.length === 0 && !resync) return false;
    const read = generation === this.generation && !resync ? unseen : names;
    if (read === names) this.resyncedAt = performance.now();
    const snapshots = await Promise.all(read.map((n) => this.control.snapshot(n)));
    read.forEach((n, i) => this.models.set(n, snapshots[i]!));
    const moved = generation !== this.generation;
    this.generation = generation;
    return moved || unseen.length > 0 || resync;
  }

  /** Whether an admin asked for a load since the last call (and forget it): time to look at the folder. */
  takeLoadRequest(): boolean {
    const asked = this.loadRequested;
    this.loadRequested = false;
    return asked;
  }

  /** The last state read of a model (the default state before the first read). */
  of(model: string): ModelSnapshot {
    return this.models.get(model) ?? EMPTY;
  }

  isDraining(model: string, version: string): boolean {
    return this.of(model).draining.has(version);
  }
}
