import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { REPO_ROOT, TEST_KEY } from './platform.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

const MAIN = path.join(REPO_ROOT, 'apps', 'cli', 'src', 'main.ts');

/** Run the CLI as a child process with INFER_URL / INFER_API_KEY set (INFER_ADMIN_KEY unset unless `env` sets it). */
export async function runCliProcess(baseUrl: string, args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const inherited = { ...process.env };
  delete inherited.INFER_ADMIN_KEY;
  return collected(
    spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
      cwd: REPO_ROOT,
      env: { ...inherited, INFER_URL: baseUrl, INFER_API_KEY: TEST_KEY, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
}

/** A child process's exit code and all it wrote (spawned with stdout and stderr piped). */
export async function collected(child: ChildProcessByStdio<null, Readable, Readable>): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}
