import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from './platform.js';

// ---------------------------------------------------------------------------
// The real processes, signalled the way they are in production.
// ---------------------------------------------------------------------------

/**
 * The argv an npm script runs, without npm and its shell in front: npm
 * re-raises a SIGTERM on itself and exits 143 at once, without waiting for
 * its child, and sh dies of it too, so only the app's own exit code says
 * whether its shutdown was graceful (Docker runs the same command as PID 1's
 * child). `node` is this Node; another name is a binary of node_modules/.bin
 * (as it was when the scripts ran the tsx CLI: see the worker test below).
 */
function npmScript(name: string): string[] {
  const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const script = pkg.scripts[name];
  if (!script || !/^[\w./:=@-]+(?: [\w./:=@-]+)*$/.test(script)) throw new Error(`npm script ${name} is not a plain command: ${script}`);
  const [cmd, ...args] = script.split(' ') as [string, ...string[]];
  return [cmd === 'node' ? process.execPath : path.join(REPO_ROOT, 'node_modules', '.bin', cmd), ...args];
}

/** What runs an app with its wall clock `ms` ahead of this host's (negative: behind): test/helpers/clock-shift.ts. */
export function clockShifted(ms: number): { env: Record<string, string>; nodeArgs: string[] } {
  return { env: { CLOCK_SHIFT_MS: String(ms) }, nodeArgs: ['--import', pathToFileURL(path.join(import.meta.dirname, 'clock-shift.ts')).href] };
}

export interface LogLine {
  msg?: string;
  name?: string;
  signal?: string;
  [key: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** performance.now() when it exited. */
  at: number;
}

/** A process started from an npm script, leading a process group of its own, its JSON log lines collected. */
export class Spawned {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  readonly exited: Promise<Exit>;
  /** Resolves when its stdout has ended: every line it wrote has been read. */
  private readonly drained: Promise<void>;
  private stderr = '';
  private readonly listeners = new Set<() => void>();

  /** `nodeArgs` go to a `node` script's Node, just before the script's file (after its `--import tsx`). */
  constructor(script: string, env: Record<string, string>, options: { nodeArgs?: readonly string[] } = {}) {
    const [cmd, ...args] = npmScript(script) as [string, ...string[]];
    if (options.nodeArgs?.length) {
      if (cmd !== process.execPath) throw new Error(`npm script ${script} does not run node: no node arguments for it`);
      args.splice(args.length - 1, 0, ...options.nodeArgs);
    }
    this.child = spawn(cmd, args, {
      cwd: REPO_ROOT,
      // Its own process group, as under a container runtime or a terminal: `kill -TERM -<pgid>` reaches every process in it.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LOG_LEVEL: 'info', ...env },
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    const stdout = createInterface({ input: this.child.stdout! });
    stdout.on('line', (text) => {
      try {
        this.lines.push(JSON.parse(text) as LogLine);
      } catch {
        this.lines.push({ msg: text });
      }
      for (const l of this.listeners) l();
    });
    this.drained = new Promise<void>((resolve) => stdout.once('close', resolve));
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        const at = performance.now();
        // The last lines are read before anyone looks at them.
        void this.drained.then(() => resolve({ code, signal, at }));
      });
    });
  }

  /** Signal every process of its group. */
  signalGroup(signal: NodeJS.Signals): void {
    process.kill(-this.child.pid!, signal);
  }

  /** What it wrote to stderr so far. */
  get errorOutput(): string {
    return this.stderr;
  }

  /** Lines whose `msg` starts with `prefix` (from the app named `name`, if given). */
  logged(prefix: string, name?: string): LogLine[] {
    return this.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith(prefix) && (name === undefined || l.name === name));
  }

  /** Resolves once a line starts with `prefix`; fails after `ms`, or as soon as its output ends without one. */
  waitForLog(prefix: string, ms: number, { name }: { name?: string } = {}): Promise<void> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const done = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.listeners.delete(look);
        if (err) reject(err);
        else resolve();
      };
      const look = () => {
        if (this.logged(prefix, name).length > 0) done();
      };
      // A bound on the wait for the line, not a wait: the line (or the exit) settles it first.
      const timer = setTimeout(() => done(new Error(`no "${prefix}" logged within ${ms} ms${this.tail()}`)), ms);
      this.listeners.add(look);
      void this.drained.then(() => {
        look();
        done(new Error(`exited without logging "${prefix}": ${this.stderr}${this.tail()}`));
      });
      look();
    });
  }

  /** Its exit, or a failure after `ms` (then it is killed, so no test leaves a process behind). */
  async exit(ms: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.kill();
        reject(new Error(`did not exit within ${ms} ms${this.tail()}`));
      }, ms);
    });
    try {
      return await Promise.race([this.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL whatever is left of its group (cleanup only). */
  kill(): void {
    try {
      process.kill(-this.child.pid!, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }

  /** Whether any process of its group is still alive. */
  groupAlive(): boolean {
    try {
      process.kill(-this.child.pid!, 0);
      return true;
    } catch {
      return false;
    }
  }

  tail(): string {
    return `\n  last lines: ${this.lines
      .slice(-12)
      .map((l) => JSON.stringify(l))
      .join('\n  ')}`;
  }
}
