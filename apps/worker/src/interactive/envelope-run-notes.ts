import type { EnvelopeQueue } from '@infer/job-store';
import type { Logger } from '@infer/logger';
import { dropRunMark, holdRunMark, type RunMark, type RunWatch } from '@infer/models';
import type { HeldEnvelope } from './envelope.js';

/** What of a held envelope its run note needs. */
export type NotedEnvelope = Pick<HeldEnvelope, 'id' | 'token' | 'take' | 'runBegan'>;

/**
 * The envelopes' notes that a run of them began in their take (`rt`, see
 * FETCH), kept true while they wait for their batch: a worker that dies in
 * a run counts the stall only to the envelopes of that run.
 *
 * - A blocking take notes what it brings when that runs next; such an
 *   envelope's note is held as a RunMark from when its take is read, so a
 *   run of other work that starts first (this worker's batch before it, a
 *   bulk slice, another version's batch) clears it before it starts
 *   (runModel does that).
 * - Before each batch's run (`watch`), the envelopes of it whose notes are
 *   not set are noted. Their marks stay held until their jobs end (FINISH),
 *   so a run of other work between their run and their end (the batch
 *   after theirs) clears them too: should it kill the worker, they do not
 *   count the stall as theirs and run again whole.
 *
 * Notes and clears are written to Redis's socket just before the run, not
 * waited for: a process that dies in the run has the kernel send what it
 * wrote, and runs under load do not each wait a round trip. (With Redis
 * away they are not written: then a run waits for its clears, a second at
 * most, in runModel.) Clears asked for in one turn go as one command. Both
 * travel by the same command, outside the connection's auto-pipeline, so
 * Redis reads them in the order they were written.
 */
export class EnvelopeRunNotes {
  private readonly marks = new WeakMap<NotedEnvelope, RunMark>();
  /** The clears asked for in this turn, and their one write. */
  private clearing: { envelopes: NotedEnvelope[]; written: Promise<void> } | undefined;

  constructor(
    private readonly queue: EnvelopeQueue,
    private readonly log: Logger,
  ) {}

  /** An envelope read from its take: one the take noted is held, for another's run to clear first. */
  taken(held: NotedEnvelope): void {
    if (held.runBegan) holdRunMark(this.markOf(held));
  }

  /** Its jobs have all ended: FINISH deletes its note with it, no run has to clear it. */
  ended(held: NotedEnvelope): void {
    const mark = this.marks.get(held);
    if (mark) dropRunMark(mark);
  }

  /** For each run of a batch of these envelopes: theirs are not cleared, and those not noted are noted just before it. */
  watch(envelopes: readonly NotedEnvelope[]): RunWatch {
    return {
      marks: envelopes.map((e) => this.markOf(e)),
      before: async () => {
        const unnoted = envelopes.filter((e) => !e.runBegan);
        if (unnoted.length === 0) return;
        for (const e of unnoted) {
          e.runBegan = true;
          holdRunMark(this.markOf(e));
        }
        void this.write(unnoted, true);
      },
      after: async () => undefined,
    };
  }

  private markOf(held: NotedEnvelope): RunMark {
    let mark = this.marks.get(held);
    if (!mark) {
      mark = { clear: () => this.clear(held) };
      this.marks.set(held, mark);
    }
    return mark;
  }

  private clear(held: NotedEnvelope): Promise<void> {
    held.runBegan = false;
    if (!this.clearing) {
      const batch = { envelopes: [] as NotedEnvelope[], written: Promise.resolve() };
      batch.written = Promise.resolve().then(() => {
        this.clearing = undefined;
        const answered = this.write(batch.envelopes, false);
        // Connected, the command is on Redis's socket once sent: the run need not wait for its answer.
        return this.queue.connected ? undefined : answered;
      });
      this.clearing = batch;
    }
    this.clearing.envelopes.push(held);
    return this.clearing.written;
  }

  /**
   * MARK_ENVELOPE_RUNS. One that fails is logged, never thrown: the batch
   * runs anyway (its jobs are not held back for a note). Should a run then
   * kill the worker, a note not written leaves the envelopes of that run not
   * counting the stall as theirs, and a clear not written leaves those held
   * beside it counting it.
   */
  private async write(envelopes: readonly NotedEnvelope[], begun: boolean): Promise<void> {
    await this.queue.markRunsBegun(envelopes.map((e) => ({ id: e.id, token: e.token, take: begun ? e.take : null }))).catch((err: unknown) => {
      this.log.warn({ err: (err as Error).message, envelopes: envelopes.length }, begun ? "could not note that a batch's run began" : "could not clear envelopes' notes before another's run");
    });
  }
}
