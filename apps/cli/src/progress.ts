import { Presets, SingleBar } from 'cli-progress';
import type { Batch } from '@infer/sdk';
import type { CliIo } from './io.js';

/** Shows a batch's `request_counts` while the CLI waits for it to end. */
export interface BatchProgress {
  update(batch: Batch): void;
  stop(): void;
}

const done = (b: Batch) => b.request_counts.succeeded + b.request_counts.failed + b.request_counts.canceled;

/** How often the line reporter prints when nothing else changed. */
export const LINE_INTERVAL_MS = 2000;

/**
 * Progress goes to stderr, so stdout keeps only the final JSON (`> batch.json`
 * still shows it): a cli-progress bar when stderr is a terminal; otherwise (a
 * pipe, a CI log) a plain line every ~2 s and on each status change, so logs
 * stay readable.
 */
export function batchProgress(io: CliIo, now: () => number = Date.now): BatchProgress {
  return io.stderr.isTTY ? barProgress(io) : lineProgress(io, now);
}

function barProgress(io: CliIo): BatchProgress {
  const bar = new SingleBar(
    {
      stream: io.stderr,
      format: '{id} [{bar}] {percentage}% | {value}/{total} | {status} | ok {succeeded} failed {failed} canceled {canceled}',
      hideCursor: true,
    },
    Presets.shades_classic,
  );
  let started = false;
  return {
    update(batch) {
      const payload = { id: batch.id, status: batch.status, ...batch.request_counts };
      if (!started) {
        bar.start(batch.request_counts.total, done(batch), payload);
        started = true;
      } else {
        bar.setTotal(batch.request_counts.total);
        bar.update(done(batch), payload);
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

function lineProgress(io: CliIo, now: () => number): BatchProgress {
  let lastAt = -Infinity;
  let lastStatus = '';
  let last: Batch | undefined;
  let lastPrinted: Batch | undefined;
  const print = (b: Batch) => {
    const c = b.request_counts;
    io.stderr.write(
      `batch ${b.id} ${b.status}: ${done(b)}/${c.total} done (succeeded ${c.succeeded}, failed ${c.failed}, canceled ${c.canceled})\n`,
    );
    lastAt = now();
    lastStatus = b.status;
    lastPrinted = b;
  };
  return {
    update(batch) {
      last = batch;
      if (batch.status !== lastStatus || now() - lastAt >= LINE_INTERVAL_MS) print(batch);
    },
    stop() {
      // The final counts, unless that very state was just printed.
      if (last && last !== lastPrinted) print(last);
    },
  };
}
