import type { InferClient } from '@infer/sdk';

/** What a command may touch of the process: its streams, and a client built from the global options. */
export interface CliIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  stdin: NodeJS.ReadStream;
}

export interface CliContext extends CliIo {
  client(): InferClient;
  /** The client, for a model admin command: a usage error unless an admin key (--admin-key, INFER_ADMIN_KEY) was given. */
  adminClient(): InferClient;
  /** An admin command asked for the admin key: a 401 or 403 then gets a hint about it. */
  usedAdminKey: boolean;
}

/** Bad flags or arguments: exit code 2, as for commander's own parse errors. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The command could not do what it was asked (nothing to act on): exit code 1, like an API error. */
export class CommandError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommandError';
  }
}

export const EXIT_OK = 0;
export const EXIT_API_ERROR = 1;
export const EXIT_USAGE = 2;

/** `--timeout` bounds only the wait: without `--wait` it would be ignored, and the command not do what was asked. */
export function refuseTimeoutWithoutWait(opts: { wait?: boolean; timeout?: number }): void {
  if (opts.timeout !== undefined && !opts.wait) throw new UsageError('--timeout needs --wait');
}
