import type { Redis } from 'ioredis';
import { markChunkRun } from '@infer/job-store';
import type { Logger } from '@infer/logger';
import { dropRunMark, holdRunMark, type RunMark, type RunWatch } from '@infer/models';

/**
 * A bulk chunk's note that its run is under way (`rb`, MARK_RUN_BEGAN at
 * the take), as a RunMark: a chunk runs slice after slice, yielding to
 * interactive work between them, and a worker killed by an interactive
 * job's input then must not count the stall as the chunk's. So the note
 * is cleared before another's run in the process starts (runModel does
 * that), and set again before the chunk's next slice (`watch`): a command
 * each way, only when the chunk's runs and others' take turns.
 */
export class ChunkRunMark implements RunMark {
  private set = true;

  constructor(
    private readonly connection: Redis,
    private readonly jobKey: string,
    private readonly token: string,
    private readonly attempt: number,
    private readonly log: Logger,
  ) {
    // MARK_RUN_BEGAN sets it next, on the same connection: a clear sent after it lands after it.
    holdRunMark(this);
  }

  async clear(): Promise<void> {
    this.set = false;
    await this.write(null);
  }

  /** The chunk waits for other work (it yields to interactive jobs): its note is cleared now, not only once their runs start. */
  async setAside(): Promise<void> {
    if (!this.set) return;
    dropRunMark(this);
    await this.clear();
  }

  /** The chunk's runs are over: its note stays (a results write in flight), and is no one's to clear. */
  done(): void {
    dropRunMark(this);
  }

  /** For each of the chunk's runs: the note set again before it when another's run cleared it. */
  watch(inner?: RunWatch): RunWatch {
    return {
      marks: [this],
      before: async () => {
        if (!this.set) {
          this.set = true;
          holdRunMark(this);
          await this.write(this.attempt);
        }
        await inner?.before();
      },
      after: async () => {
        await inner?.after();
      },
    };
  }

  private async write(attempt: number | null): Promise<void> {
    await markChunkRun(this.connection, this.jobKey, this.token, attempt).catch((err: unknown) =>
      this.log.warn({ jobKey: this.jobKey, err: (err as Error).message }, attempt === null ? "could not clear a chunk's run note" : "could not set a chunk's run note again"),
    );
  }
}
