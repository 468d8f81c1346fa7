import { createWriteStream } from 'node:fs';
import { open, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import type { Command } from 'commander';
import type { Batch, InferClient } from '@infer/sdk';
import { CommandError, UsageError, refuseTimeoutWithoutWait, type CliContext } from '../io.js';
import { printJson, printTable } from '../output.js';
import { modelVersion, pageLimit, positiveInt, seconds } from '../parsers.js';
import { batchProgress } from '../progress.js';

interface SubmitOptions {
  model: string;
  version?: string;
  webhook?: string;
  wait?: boolean;
  output?: string;
  pollMs: number;
  timeout?: number;
}

/**
 * Stream the results to a file or stdout, never holding them whole. The
 * destination is opened only once the server has answered, so an error (409
 * before the end) leaves no empty file behind; stdout is left open.
 */
async function download(client: InferClient, id: string, to: string | Writable): Promise<void> {
  const body = Readable.fromWeb((await client.batches.resultsStream(id)) as NodeReadableStream<Uint8Array>);
  if (typeof to !== 'string') return pipeline(body, to, { end: false });
  try {
    await pipeline(body, createWriteStream(to));
  } catch (err) {
    // A file cut short must not pass for the results: it goes, whatever broke (the connection, the disk).
    await rm(to, { force: true }).catch(() => undefined);
    // The file could not be written (no such folder, no permission, disk full): say so, not a stack trace.
    if (typeof (err as NodeJS.ErrnoException).code === 'string' && (err as NodeJS.ErrnoException).syscall) throw new CommandError(`cannot write ${to}: ${(err as Error).message}`);
    throw err;
  }
}

/**
 * Refuse an --output that cannot be written before waiting for a batch, not
 * after. The file is opened (created, and removed again, when it is not
 * there yet): a writable folder is not enough, as root passes that check on
 * folders where nothing can be created (/dev/fd, /proc).
 */
async function assertWritable(to: string): Promise<void> {
  let handle: FileHandle | undefined;
  let created = false;
  try {
    try {
      handle = await open(to, 'wx');
      created = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // There already: opened for writing without truncating it (the download replaces it once the batch ends).
      handle = await open(to, 'r+');
    }
  } catch (err) {
    throw new UsageError(`cannot write ${to}: ${(err as Error).message}`);
  } finally {
    await handle?.close();
    if (created) await rm(to, { force: true });
  }
}

export function registerBatch(program: Command, ctx: CliContext): void {
  const batch = program.command('batch').description('bulk offline scoring from NDJSON files');

  batch
    .command('submit')
    .description('upload an NDJSON file (one {"custom_id"?, "input"} a line) as a batch')
    .argument('<file>', 'the NDJSON file')
    .requiredOption('-m, --model <name>', 'model name')
    .option('--version <n>', 'model version (default: one chosen by the model\'s routing)', modelVersion)
    .option('--webhook <url>', 'URL to POST batch.completed to')
    .option('-w, --wait', 'wait for the batch to end, showing progress, then download the results')
    .option('-o, --output <path>', 'with --wait: where to write the results (default: <file>.results.ndjson)')
    .option('--poll-ms <ms>', 'with --wait: how often to ask for progress', positiveInt, 1000)
    .option('--timeout <seconds>', 'with --wait: give up waiting after this long', seconds)
    .action(async (file: string, opts: SubmitOptions, command: Command) => {
      const info = await stat(file).catch(() => undefined);
      // A pipe too: a FIFO, or a shell's `<(zcat items.ndjson.gz)`.
      if (!info?.isFile() && !info?.isFIFO()) throw new UsageError(`no such file: ${file}`);
      refuseTimeoutWithoutWait(opts);
      // It has a default: only one given on the command line is a flag asked for in vain.
      if (command.getOptionValueSource('pollMs') === 'cli' && !opts.wait) throw new UsageError('--poll-ms needs --wait');
      if (opts.output !== undefined && !opts.wait) throw new UsageError('--output needs --wait (or use `batch results <id> --output`)');
      // A pipe's name (/dev/fd/63) has no folder of files to put the results beside.
      if (opts.wait && opts.output === undefined && !info.isFile()) throw new UsageError(`${file} is a pipe: with --wait, give --output <path> for the results`);
      if (opts.wait) await assertWritable(opts.output ?? `${file}.results.ndjson`);
      const client = ctx.client();
      const created = await client.batches.upload({ model: opts.model, version: opts.version, webhook: opts.webhook }, file);
      if (!opts.wait) return printJson(ctx.stdout, created);

      ctx.stderr.write(`batch ${created.id} submitted (${created.request_counts.total} items); waiting for it to end\n`);
      const progress = batchProgress(ctx);
      let ended: Batch;
      try {
        ended = await client.batches.wait(created.id, {
          pollMs: opts.pollMs,
          timeoutMs: opts.timeout === undefined ? undefined : opts.timeout * 1000,
          onProgress: (b) => progress.update(b),
        });
      } finally {
        progress.stop();
      }
      const output = opts.output ?? `${file}.results.ndjson`;
      await download(client, created.id, output);
      ctx.stderr.write(`results written to ${output}\n`);
      printJson(ctx.stdout, ended);
    });

  batch
    .command('status')
    .description('show a batch and its request counts')
    .argument('<id>', 'batch id')
    .action(async (id: string) => {
      printJson(ctx.stdout, await ctx.client().batches.get(id));
    });

  batch
    .command('results')
    .description('download the results of an ended batch (NDJSON, one line per item in submission order)')
    .argument('<id>', 'batch id')
    .option('-o, --output <path>', 'write to this file instead of stdout')
    .action(async (id: string, opts: { output?: string }) => {
      await download(ctx.client(), id, opts.output ?? ctx.stdout);
      if (opts.output !== undefined) ctx.stderr.write(`results written to ${opts.output}\n`);
    });

  batch
    .command('cancel')
    .description('cancel a batch: items not yet run end canceled, finished results are kept')
    .argument('<id>', 'batch id')
    .action(async (id: string) => {
      printJson(ctx.stdout, await ctx.client().batches.cancel(id));
    });

  batch
    .command('list')
    .description("list the tenant's batches")
    .option('--limit <n>', 'batches per page, 1-100 (default 20)', pageLimit)
    .option('--after <id>', 'start after this batch id')
    .option('--all', 'follow every page')
    .option('--json', 'print JSON')
    .action(async (opts: { limit?: number; after?: string; all?: boolean; json?: boolean }) => {
      const client = ctx.client();
      const params = { limit: opts.limit, after: opts.after };
      let batches: Batch[];
      let more: string | undefined;
      if (opts.all) {
        batches = [];
        for await (const b of client.batches.listAll(params)) batches.push(b);
      } else {
        const page = await client.batches.list(params);
        batches = page.data;
        if (page.has_more && page.last_id) more = page.last_id;
      }
      // On stderr, as `models events` does: stdout stays the list alone.
      if (more) ctx.stderr.write(`more: --after ${more}\n`);
      if (opts.json) return printJson(ctx.stdout, batches);
      printTable(
        ctx.stdout,
        ['ID', 'STATUS', 'MODEL', 'DONE/TOTAL', 'FAILED', 'CREATED'],
        batches.map((b) => {
          const c = b.request_counts;
          return [b.id, b.status, `${b.model}:${b.version}`, `${c.succeeded + c.failed + c.canceled}/${c.total}`, String(c.failed), b.created_at];
        }),
      );
    });
}
