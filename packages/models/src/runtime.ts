import * as ort from 'onnxruntime-node';
import { DATATYPE_OF_ORT, ORT_TYPE_OF, type Datatype, type OrtTensorType } from '@infer/contract';
import type { DecodedTensor, TensorData } from '@infer/tensors';
import type { ModelVersion } from './model-repository.js';

export interface RunResult {
  outputs: Record<string, DecodedTensor>;
  inferenceMs: number;
}

/**
 * A batched model's output whose first dimension is not the run's instances
 * (NonZero's indices, a detector's boxes: a dynamic first dimension that is
 * not the batch). Splitting it by instance would hand one job another's rows,
 * or part of its own: the run fails instead, and a lone instance's job fails
 * with this message.
 */
export class UnbatchedOutputError extends Error {
  constructor(model: ModelVersion, output: string, rows: number, instances: number) {
    super(
      `output "${output}" of model ${model.name} v${model.version} has ${rows} rows for a run of ${instances} instance${instances === 1 ? '' : 's'}: ` +
        'its first dimension is not the batch (serve such a model with "max_batch_size": 0 in its config.json, one job at a time)',
    );
    this.name = 'UnbatchedOutputError';
  }
}

/**
 * Told of one run in its turn: `before` once nothing else runs in this
 * process, `after` once the run has ended (or thrown), before anything else
 * runs. A note that `before` writes and `after` clears names the run going
 * on if the run kills the process (ONNX Runtime can: an integer overflow's
 * SIGFPE), and nothing else. Each handles its own errors.
 */
export interface RunWatch {
  before(): Promise<void>;
  after(): Promise<void>;
  /** The marks of the work this run is of (see RunMark): not cleared for it. */
  marks?: readonly RunMark[];
}

/**
 * A note in Redis that some work's run is under way, held across several
 * runs of it (a bulk chunk's, slice after slice) or ahead of its run (an
 * envelope's, noted by the take that brought it): should the process die
 * while it is set, the work's next take counts the stall as its own. So it
 * must not be set while another's run goes on: every mark held is cleared
 * before any run but its own work's starts (runModel), and its work sets it
 * again before its next run. Each handles its own errors.
 */
export interface RunMark {
  /**
   * Clear the note: resolves once Redis has it, or will even if the process
   * dies next (written to Redis's socket). One that has not resolved within
   * CLEAR_WAIT_MS (Redis away) is not waited for further.
   */
  clear(): Promise<void>;
}

/** Marks set in Redis now, by work of this process. */
const heldMarks = new Set<RunMark>();

/** A mark is set (its work has written it): cleared before another's run. */
export function holdRunMark(mark: RunMark): void {
  heldMarks.add(mark);
}

/** A mark's work is over (or cleared it itself): nothing to clear for it. */
export function dropRunMark(mark: RunMark): void {
  heldMarks.delete(mark);
}

/**
 * How long a run waits for others' marks to be cleared. Past it (Redis away:
 * the clears wait in the connection's offline queue) the run goes ahead with
 * them set, rather than every run in the process waiting for Redis: should it
 * then kill the process, their work counts the stall as its own, as it did
 * before marks were cleared at all.
 */
const CLEAR_WAIT_MS = 1000;

function othersHeld(watch: RunWatch | undefined): boolean {
  if (heldMarks.size === 0) return false;
  for (const m of heldMarks) if (!watch?.marks?.includes(m)) return true;
  return false;
}

/**
 * Clear the marks held by other work than `watch`'s, again for those held
 * meanwhile (a take's reply read while the clears went out), three rounds at
 * most, each waiting at most CLEAR_WAIT_MS. A round that times out ends it:
 * Redis is away, and the run goes ahead.
 */
async function clearOthers(watch: RunWatch | undefined): Promise<void> {
  for (let round = 0; round < 3 && othersHeld(watch); round++) {
    const others = [...heldMarks].filter((m) => !watch?.marks?.includes(m));
    for (const m of others) heldMarks.delete(m);
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), CLEAR_WAIT_MS)));
    const outcome = await Promise.race([Promise.all(others.map((m) => m.clear())), waited]);
    clearTimeout(timer);
    if (outcome === 'late') return;
  }
}

/** The end of the run most recently asked for, in this process (see runModel). */
let lastRun: Promise<void> = Promise.resolve();
/** Runs asked for in this process and not yet ended (running, or waiting their turn): see runsUnderWay. */
let pendingRuns = 0;

/**
 * Model runs asked for in this process that have not ended, of any model and
 * any consumer (interactive batches, bulk slices): what a take must know to
 * tell whether the work it brings runs next.
 */
export function runsUnderWay(): number {
  return pendingRuns;
}

/**
 * One `InferenceSession.run` over already-stacked (or, for a model that is
 * not batched, whole) tensors. onnxruntime-node (1.30) runs it on the
 * calling thread (its promise only defers the call to the next turn), so
 * the event loop waits for each run: one run per micro-batch, not per job,
 * is what keeps a worker's own I/O (taking and finishing envelopes) going.
 *
 * `watch` is told in the run's turn, before it starts and after it ends
 * (see RunWatch).
 */
export async function runModel(model: ModelVersion, feeds: Record<string, DecodedTensor>, watch?: RunWatch): Promise<RunResult> {
  const ortFeeds: Record<string, ort.Tensor> = {};
  for (const [name, t] of Object.entries(feeds)) {
    ortFeeds[name] = new ort.Tensor(ORT_TYPE_OF[t.datatype] as 'float32', t.data as Float32Array, t.shape);
  }
  // Runs take turns (they do anyway: one thread runs them all), so each one's clock starts when the
  // run before it has ended. Two started in one turn would otherwise both be timed from that turn,
  // and the second's inference_ms would hold the first's whole run.
  const before = lastRun;
  let ended!: () => void;
  lastRun = new Promise<void>((resolve) => (ended = resolve));
  pendingRuns++;
  let results: ort.InferenceSession.ReturnType;
  let inferenceMs: number;
  try {
    await before;
    // Another's marks, cleared (written to Redis) before this run: should it kill the process, their work was only beside it.
    if (othersHeld(watch)) await clearOthers(watch);
    await watch?.before();
    // Again for marks held while those awaits went on (a take's reply read meanwhile).
    if (othersHeld(watch)) await clearOthers(watch);
    const started = performance.now();
    try {
      results = await model.session.run(ortFeeds);
    } finally {
      await watch?.after();
    }
    inferenceMs = performance.now() - started;
  } finally {
    pendingRuns--;
    ended();
  }
  const outputs: Record<string, DecodedTensor> = {};
  // Stacked along the first dimension: every output must be too.
  const instances = model.batched ? Object.values(feeds)[0]?.shape[0] : undefined;
  for (const spec of model.outputs) {
    const tensor = results[spec.name];
    if (!tensor) throw new Error(`model ${model.name} v${model.version} returned no output "${spec.name}"`);
    if (instances !== undefined && tensor.dims[0] !== instances) throw new UnbatchedOutputError(model, spec.name, tensor.dims[0] ?? 0, instances);
    outputs[spec.name] = {
      datatype: DATATYPE_OF_ORT[tensor.type as OrtTensorType] as Exclude<Datatype, 'BYTES'>,
      shape: [...tensor.dims],
      data: tensor.data as TensorData,
    };
  }
  return { outputs, inferenceMs };
}
