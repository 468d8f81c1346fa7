import { Command, CommanderError, Option } from 'commander';
import { InferApiError, InferArgumentError, InferClient, InferTimeoutError } from '@infer/sdk';
import { registerBatch } from './commands/batch.js';
import { registerJobs } from './commands/jobs.js';
import { registerModels } from './commands/models.js';
import { CommandError, EXIT_API_ERROR, EXIT_OK, EXIT_USAGE, UsageError, type CliContext, type CliIo } from './io.js';

export interface CliDefaults {
  /** From INFER_URL. @default 'http://localhost:8080' */
  url?: string | undefined;
  /** From INFER_API_KEY. @default 'dev-key' */
  apiKey?: string | undefined;
  /** From INFER_ADMIN_KEY: the admin key the model-lifecycle commands send. No default. */
  adminKey?: string | undefined;
}

interface GlobalOptions {
  url: string;
  apiKey: string;
  adminKey?: string;
}

/** The command tree. Parse errors throw (exitOverride) instead of exiting, so `runCli` picks the exit code. */
export function buildProgram(io: CliIo, defaults: CliDefaults = {}): Command {
  return buildCli(io, defaults).program;
}

function buildCli(io: CliIo, defaults: CliDefaults): { program: Command; ctx: CliContext } {
  const program = new Command('infer')
    .description('Command line client of the inference platform (see docs/cli.md)')
    .addOption(new Option('--url <url>', 'gateway URL').default(defaults.url || 'http://localhost:8080', '$INFER_URL or http://localhost:8080'))
    // The description, not the value, goes into --help: a key from the environment is not printed.
    .addOption(new Option('--api-key <key>', 'API key').default(defaults.apiKey || 'dev-key', '$INFER_API_KEY or dev-key'))
    .addOption(new Option('--admin-key <key>', 'admin key (ADMIN_API_KEYS) for the model admin commands').default(defaults.adminKey || undefined, '$INFER_ADMIN_KEY'))
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .showHelpAfterError('(run with --help for usage)');

  let client: InferClient | undefined;
  const ctx: CliContext = {
    ...io,
    usedAdminKey: false,
    client() {
      const opts = program.opts<GlobalOptions>();
      if (!/^https?:$/.test(URL.parse(opts.url)?.protocol ?? '')) throw new UsageError(`--url must be an http:// or https:// URL, not ${JSON.stringify(opts.url)}`);
      client ??= new InferClient({ baseUrl: opts.url, apiKey: opts.apiKey, adminKey: opts.adminKey });
      return client;
    },
    adminClient() {
      if (!program.opts<GlobalOptions>().adminKey) {
        throw new UsageError('this command needs an admin key (one of the gateway\'s ADMIN_API_KEYS): --admin-key <key> or INFER_ADMIN_KEY');
      }
      ctx.usedAdminKey = true;
      return ctx.client();
    },
  };
  registerModels(program, ctx);
  registerJobs(program, ctx);
  registerBatch(program, ctx);
  return { program, ctx };
}

/**
 * A request that never reached the server, or whose answer was cut off: undici's "fetch failed" (before
 * the answer) or "terminated" (the connection dropped while the body came), with the socket error as its cause.
 */
function connectionFailure(err: unknown): string | undefined {
  if (!(err instanceof TypeError) || (err.message !== 'fetch failed' && err.message !== 'terminated')) return undefined;
  const cause = err.cause as { code?: string; message?: string } | undefined;
  // undici refusing what it was asked to send (a header value, say) is no connection failure.
  if (cause?.code === 'UND_ERR_INVALID_ARG') return undefined;
  const why = cause?.code ?? cause?.message ?? 'connection failed';
  return err.message === 'terminated' ? `the connection dropped mid-answer: ${why}` : why;
}

/**
 * Run one command line; resolves with the exit code: 0 ok, 1 the API said
 * no (or could not be reached, or there was nothing to act on), 2 a usage error.
 */
export async function runCli(argv: readonly string[], io: CliIo, defaults: CliDefaults = {}): Promise<number> {
  const { program, ctx } = buildCli(io, defaults);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT_OK;
  } catch (err) {
    // commander has already printed its message (and help) to stderr.
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    // An id or name the SDK cannot send ('', '.', '..') is a bad argument.
    if (err instanceof UsageError || err instanceof InferArgumentError) {
      io.stderr.write(`error: ${err.message}\n(run with --help for usage)\n`);
      return EXIT_USAGE;
    }
    if (err instanceof InferApiError) {
      io.stderr.write(`error: ${err.detail} (code: ${err.code}, HTTP ${err.status})\n`);
      if (ctx.usedAdminKey && (err.status === 401 || err.status === 403)) {
        io.stderr.write('hint: model admin commands send the admin key (--admin-key or INFER_ADMIN_KEY), which must be one of the gateway\'s ADMIN_API_KEYS, not a tenant\'s API key\n');
      }
      return EXIT_API_ERROR;
    }
    if (err instanceof CommandError) {
      io.stderr.write(`error: ${err.message}\n`);
      return EXIT_API_ERROR;
    }
    if (err instanceof InferTimeoutError) {
      io.stderr.write(`error: ${err.message}\n`);
      return EXIT_API_ERROR;
    }
    const unreachable = connectionFailure(err);
    if (unreachable) {
      io.stderr.write(`error: cannot reach ${program.opts<GlobalOptions>().url} (${unreachable})\n`);
      return EXIT_API_ERROR;
    }
    throw err;
  }
}
