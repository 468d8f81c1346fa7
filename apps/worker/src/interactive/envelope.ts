import { BYTES_PER_ELEMENT, EnvelopeData, type EnvelopeJob, type JobMetrics } from '@infer/contract';
import type { TakenEnvelope } from '@infer/job-store';
import type { ModelVersion } from '@infer/models';
import { elementCount, formatShape, shapeMatches } from '@infer/tensors';
import type { InstanceInput } from './microbatch.js';

/**
 * An envelope a worker holds: its jobs, their inputs as views of the
 * envelope's bytes, and what has become of each job so far.
 */
export interface HeldEnvelope {
  id: string;
  /** The lock token it was taken with. */
  token: string;
  data: EnvelopeData;
  /** When this worker took it (epoch ms): the jobs' `started_at`. */
  takenAt: number;
  /** When a worker first took it (TakenEnvelope.firstTakenAt): a job whose Cancel-After deadline came before that never runs. */
  firstTakenAt: number;
  /** Which take of it this is (TakenEnvelope.take). */
  take: number;
  /** Whether Redis holds the note that a run of it began in this take (TakenEnvelope.runBegan); noted before its first run if not. */
  runBegan: boolean;
  /** Per job, in order: its inputs in the model's input order, or null for a job not to run (canceled while queued). */
  inputs: Array<InstanceInput[] | null>;
  /** Per job: its ended record once it has one, null while it has not (or will not, being canceled). */
  records: Array<Buffer | null>;
  /** Per job: the status its record ends it with. */
  statuses: Array<'succeeded' | 'failed' | 'canceled' | null>;
  /**
   * Per job that ran here: when its run ended (epoch ms), its figures and the
   * trace id its log line names. Its latency is observed, and its `job ended`
   * line written, once its end is written: a run whose end lost (to a cancel,
   * or to another worker after a stall) did not end the job.
   */
  ran: Array<{ at: number; metrics: JobMetrics } | null>;
  /** Jobs still to run. */
  pending: number;
  /**
   * Jobs (indices) whose job.started this take makes and has not yet made:
   * should one end first, FINISH puts its event on the outbox too.
   */
  startedOwed?: Set<number>;
  /**
   * Per job whose input does not fit this worker's copy of the model (a
   * model.onnx replaced in place, a worker reading another disk): why. Each
   * fails alone, with its own input's shape: an envelope holds several
   * tenants' jobs, and one job's error must not name another's.
   */
  misfits: Map<number, string>;
}

/** What is wrong with an envelope that cannot run at all: its jobs fail with this. */
export class MalformedEnvelopeError extends Error {}

/**
 * Read a taken envelope: its data (validated again: never trust the queue)
 * and its inputs, which the gateway packed input by input (all instances of
 * the first input, then of the second…). Each instance's input is a view
 * of those bytes: a micro-batch copies each instance once, into its stacked
 * tensor, or not at all when a whole envelope is the batch.
 */
export function readEnvelope(model: ModelVersion, taken: TakenEnvelope, token: string, takenAt: number): HeldEnvelope {
  const raw = taken.fields.get('data');
  const parsed = raw ? EnvelopeData.safeParse(safeJson(raw.toString())) : undefined;
  if (!parsed?.success) throw new MalformedEnvelopeError(`malformed envelope data: ${parsed?.error.issues[0]?.message ?? 'missing'}`);
  const data = parsed.data;
  if (data.model !== model.name || data.version !== model.version) {
    throw new MalformedEnvelopeError(`an envelope of ${data.model} v${data.version} in the queue of ${model.name} v${model.version}`);
  }
  const canceled = canceledIds(taken);
  const held: HeldEnvelope = {
    id: taken.id,
    token,
    data,
    takenAt,
    firstTakenAt: taken.firstTakenAt,
    take: taken.take,
    runBegan: taken.runBegan,
    inputs: [],
    records: data.jobs.map(() => null),
    statuses: data.jobs.map(() => null),
    ran: data.jobs.map(() => null),
    pending: 0,
    misfits: new Map(),
  };
  // `ix`: its inputs are in a key of their own, which the take read into `in` (EnvelopeQueue.withInputs).
  if (taken.fields.has('ix') && !taken.fields.has('in')) throw new MalformedEnvelopeError("the envelope's input bytes are gone from Redis");
  const bytes = taken.fields.get('in') ?? Buffer.alloc(0);
  let at = 0;
  const perJob: InstanceInput[][] = data.jobs.map(() => []);
  model.inputs.forEach((spec, k) => {
    if (spec.datatype === 'BYTES') throw new MalformedEnvelopeError(`input "${spec.name}" is BYTES`);
    data.jobs.forEach((job, i) => {
      const shape = shapeOf(job, k, spec.shape);
      // Its bytes are as many as its shape says (the gateway packed them so): a job that does not fit is stepped over.
      if (!shapeMatches(shape, spec.shape) && !held.misfits.has(i)) {
        held.misfits.set(i, `input "${spec.name}" of shape ${formatShape(shape)} does not fit the worker's copy of the model, which takes ${formatShape(spec.shape)}`);
      }
      const size = elementCount(shape) * BYTES_PER_ELEMENT[spec.datatype];
      if (at + size > bytes.byteLength) throw new MalformedEnvelopeError('the envelope holds fewer input bytes than its jobs need');
      perJob[i]!.push({ datatype: spec.datatype as Exclude<typeof spec.datatype, 'BYTES'>, shape, bytes: bytes.subarray(at, at + size) });
      at += size;
    });
  });
  if (at !== bytes.byteLength) throw new MalformedEnvelopeError('the envelope holds more input bytes than its jobs need');
  data.jobs.forEach((job, i) => {
    const runs = !canceled.has(job.id);
    held.inputs.push(runs ? perJob[i]! : null);
    if (runs) held.pending++;
  });
  return held;
}

/** The ids of an envelope's jobs canceled while it was queued (its `x` field). */
export function canceledIds(taken: TakenEnvelope): Set<string> {
  return new Set((taken.fields.get('x')?.toString() ?? '').split(' ').filter(Boolean));
}

function shapeOf(job: EnvelopeJob, k: number, spec: readonly number[]): number[] {
  if (job.shapes) return job.shapes[k] ?? [];
  return spec as number[];
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
