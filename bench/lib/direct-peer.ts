/**
 * The direct peer (../peer/server.ts) as a child process, started and
 * stopped as startBenchPlatform does the gateway and worker: on a free port,
 * tracked so it never outlives the bench, SIGTERM on close.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { ROOT, freePort, stopProcess, track, until, type ProcessExit } from './platform.js';

export interface DirectPeerOptions {
  /** Path to the model.onnx the peer serves. */
  modelFile: string;
  /** The `model` a request names. */
  modelName: string;
  /** ONNX Runtime intra-op threads: a number, or 'default' (ORT's choice). @default the peer's own (see ../peer/server.ts) */
  intraOpNumThreads?: number | 'default';
  /** `session.intra_op.allow_spinning`. @default the peer's own */
  allowSpinning?: boolean;
  /** Decode long base64 members straight from the body's bytes (PEER_LIFT_B64). @default true */
  liftB64?: boolean;
}

export interface DirectPeer {
  base: string;
  /** POST target: `${base}/v1/jobs`. */
  url: string;
  process: ChildProcess;
  /** The session options the peer reports it runs with. */
  sessionOptions: { intraOpNumThreads: number | 'default'; allow_spinning: string };
  /** Whether long base64 members are decoded from the body's bytes rather than through JSON.parse. */
  liftB64: boolean;
  close(): Promise<ProcessExit>;
}

export async function startDirectPeer(options: DirectPeerOptions): Promise<DirectPeer> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PEER_MODEL_FILE: options.modelFile,
    PEER_MODEL_NAME: options.modelName,
    PEER_PORT: String(port),
    PEER_HOST: '127.0.0.1',
  };
  if (options.intraOpNumThreads !== undefined) env.PEER_INTRA_OP_THREADS = String(options.intraOpNumThreads);
  if (options.allowSpinning !== undefined) env.PEER_ALLOW_SPINNING = options.allowSpinning ? '1' : '0';
  if (options.liftB64 !== undefined) env.PEER_LIFT_B64 = options.liftB64 ? '1' : '0';
  const child = track(
    spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench', 'peer', 'server.ts')], { cwd: ROOT, env, stdio: ['ignore', 'inherit', 'inherit'] }),
  );
  const base = `http://127.0.0.1:${port}`;
  let starting = true;
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => {
      if (starting) reject(new Error(`bench: the direct peer exited (${code}) while starting`));
    }),
  );
  exited.catch(() => undefined);
  try {
    const health = await Promise.race([
      until('the direct peer', async () => {
        const res = await fetch(`${base}/healthz`);
        return res.ok ? ((await res.json()) as { session_options: DirectPeer['sessionOptions']; lift_b64: boolean }) : null;
      }),
      exited,
    ]);
    return { base, url: `${base}/v1/jobs`, process: child, sessionOptions: health.session_options, liftB64: health.lift_b64, close: () => stopProcess(child, 5000) };
  } catch (err) {
    await stopProcess(child, 5000);
    throw err;
  } finally {
    starting = false;
  }
}
