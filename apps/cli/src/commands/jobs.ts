import { readFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import type { CreateJobParams, TensorInput } from '@infer/sdk';
import { UsageError, refuseTimeoutWithoutWait, type CliContext } from '../io.js';
import { printJson } from '../output.js';
import { idempotencyKey, jsonObject, modelVersion, seconds } from '../parsers.js';

interface SubmitOptions {
  model: string;
  version?: string;
  input?: Record<string, unknown>;
  inputFile?: string;
  metadata?: Record<string, unknown>;
  webhook?: string;
  idempotencyKey?: string;
  wait?: boolean;
  timeout?: number;
}

async function readAll(stream: AsyncIterable<Uint8Array | string>): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk));
  return Buffer.concat(chunks).toString('utf8');
}

async function inputOf(opts: SubmitOptions, ctx: CliContext): Promise<Record<string, TensorInput>> {
  if (opts.input) return opts.input as Record<string, TensorInput>;
  if (opts.inputFile === undefined) throw new UsageError('one of --input <json> or --input-file <path> is required');
  let text: string;
  try {
    text = opts.inputFile === '-' ? await readAll(ctx.stdin) : await readFile(opts.inputFile, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read --input-file ${opts.inputFile}: ${(err as Error).message}`);
  }
  try {
    // A UTF-8 BOM first (as some Windows editors save) is not part of the JSON; the gateway and `batch submit` skip it too.
    return jsonObject(text.replace(/^\uFEFF/, '')) as Record<string, TensorInput>;
  } catch (err) {
    throw new UsageError(`--input-file ${opts.inputFile}: ${(err as Error).message}`);
  }
}

export function registerJobs(program: Command, ctx: CliContext): void {
  const jobs = program.command('jobs').description('single inference jobs');

  jobs
    .command('submit')
    .description('submit one instance; prints the job (with --wait, the ended job)')
    .requiredOption('-m, --model <name>', 'model name')
    .option('--version <n>', 'model version (default: one chosen by the model\'s routing)', modelVersion)
    .addOption(new Option('-i, --input <json>', 'the input as JSON: {"<input name>": <tensor>}').argParser(jsonObject).conflicts('inputFile'))
    .option('-f, --input-file <path>', 'read the input JSON from a file ("-" for stdin)')
    .option('--metadata <json>', 'a JSON object echoed back on the job', jsonObject)
    .option('--webhook <url>', 'URL to POST job.completed to')
    .option('--idempotency-key <key>', 'resubmitting with the same key returns the first job', idempotencyKey)
    .option('-w, --wait', 'wait until the job has ended')
    .option('--timeout <seconds>', 'with --wait: give up after this long', seconds)
    .action(async (opts: SubmitOptions) => {
      refuseTimeoutWithoutWait(opts);
      const body: CreateJobParams = { model: opts.model, input: await inputOf(opts, ctx) };
      if (opts.version !== undefined) body.version = opts.version;
      if (opts.metadata !== undefined) body.metadata = opts.metadata;
      if (opts.webhook !== undefined) body.webhook = opts.webhook;
      const client = ctx.client();
      const job = opts.wait
        ? await client.jobs.run(body, {
            idempotencyKey: opts.idempotencyKey,
            timeoutMs: opts.timeout === undefined ? undefined : opts.timeout * 1000,
          })
        : await client.jobs.create(body, { idempotencyKey: opts.idempotencyKey });
      printJson(ctx.stdout, job);
    });

  jobs
    .command('get')
    .description('show a job')
    .argument('<id>', 'job id')
    .option('-w, --wait', 'wait until the job has ended')
    .option('--timeout <seconds>', 'with --wait: give up after this long', seconds)
    .action(async (id: string, opts: { wait?: boolean; timeout?: number }) => {
      refuseTimeoutWithoutWait(opts);
      const client = ctx.client();
      const job = opts.wait
        ? await client.jobs.wait(id, { timeoutMs: opts.timeout === undefined ? undefined : opts.timeout * 1000 })
        : await client.jobs.get(id);
      printJson(ctx.stdout, job);
    });

  jobs
    .command('cancel')
    .description('cancel a queued or running job')
    .argument('<id>', 'job id')
    .action(async (id: string) => {
      printJson(ctx.stdout, await ctx.client().jobs.cancel(id));
    });
}
