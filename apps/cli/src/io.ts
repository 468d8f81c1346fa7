import type { InferClient } from '@infer/sdk';

/** What a command may touch of the process: its streams, and a client built from the global options. */
export interface CliIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  stdin: NodeJS.ReadStream;
}

export interface CliContext extends CliIo {
  client(): InferClient;
}

/** Bad flags or arguments: exit code 2, as for commander's own parse errors. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export const EXIT_OK = 0;
export const EXIT_API_ERROR = 1;
export const EXIT_USAGE = 2;
