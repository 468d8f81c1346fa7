import type { ModelControl } from './control-store.js';
import { advanceRollouts } from './rollout.js';

/** How often a process looks for a rollout step whose time is up. */
export const ROLLOUT_TICK_MS = 1000;

/**
 * Moves rollouts on: every gateway and worker runs one, so a rollout goes on
 * while any of them is alive, whichever started it (the compare-and-set in
 * ModelControl makes one of them the one that moves each step).
 */
export class RolloutTicker {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly control: ModelControl,
    private readonly models: () => readonly string[],
    private readonly onError: (err: unknown) => void,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.tick(), ROLLOUT_TICK_MS);
    this.timer.unref();
  }

  /** One look now (tests call it instead of waiting for the timer). */
  tick(): Promise<void> {
    this.running ??= advanceRollouts(this.control, this.models())
      .catch(this.onError)
      .finally(() => (this.running = undefined));
    return this.running;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
