import {
  BYTES_PER_ELEMENT,
  type Datatype,
  type EnvelopeJob,
  type JobError,
  type JobMetrics,
  type JobStatus,
  type WebhookEventFilter,
} from '@infer/contract';
import { bytesJson, bytesJsonPieces, elementCount } from '@infer/tensors';

/**
 * An ended job's record, as stored in Redis for RESULT_TTL: one string
 * value, a compact JSON header line and then the model's raw output bytes.
 *
 * Why this shape: a day of results at a thousand jobs a second is 86 million
 * records, so every byte of a record is paid for 86 million times. A hash of
 * named fields whose output is JSON text outgrows Redis's compact encodings
 * and costs ~1.1 KB a job; this costs ~250 bytes for the shipped MLP
 * (docs/operations.md). The output is printed as JSON once, when read.
 *
 * Header keys (short, as they are stored once per job):
 *   t tenant · m model · v version · s status · c created_at (epoch ms)
 *   b started_at and e completed_at (ms after c; b absent if it never ran)
 *   q metrics [queue_ms, inference_ms, batch_size] · x error [code, message]
 *   o outputs [[name, datatype, instance shape], …] in the order their bytes follow
 *   md metadata · w webhook URL · wf webhook_events_filter (comma-separated)
 *   tp the job's traceparent, when traced (its job.completed delivery joins the job's trace)
 */
export interface RecordHeader {
  t: string;
  m: string;
  v: string;
  s: EndedStatus;
  c: number;
  b?: number;
  e: number;
  q?: [number, number, number];
  x?: [string, string];
  o?: Array<[string, Exclude<Datatype, 'BYTES'>, number[]]>;
  md?: Record<string, unknown>;
  w?: string;
  wf?: string;
  tp?: string;
}

export type EndedStatus = Extract<JobStatus, 'succeeded' | 'failed' | 'canceled'>;

/** One output of an ended job: its bytes for this instance, and the instance's shape. */
export interface RecordOutput {
  name: string;
  datatype: Exclude<Datatype, 'BYTES'>;
  shape: number[];
  bytes: Uint8Array;
}

export interface Ending {
  status: EndedStatus;
  /** Epoch ms. */
  startedAt: number | null;
  completedAt: number;
  metrics?: JobMetrics;
  error?: JobError;
  outputs?: readonly RecordOutput[];
}

/** The stored record of a job of `data` (as the envelope holds it) that ended so. */
export function encodeRecord(model: string, version: string, job: EnvelopeJob, ending: Ending): Buffer {
  // The stamps are on one clock (Redis's, platformNow), each process's reading of it off by its offset's
  // error (a millisecond or so): never let that put a job's start before its creation or its end before either.
  const startedAt = ending.startedAt === null ? null : Math.max(ending.startedAt, job.created_at);
  const completedAt = Math.max(ending.completedAt, startedAt ?? job.created_at);
  const header: RecordHeader = {
    t: job.tenant,
    m: model,
    v: version,
    s: ending.status,
    c: job.created_at,
    ...(startedAt !== null ? { b: startedAt - job.created_at } : {}),
    e: completedAt - job.created_at,
    ...(ending.metrics ? { q: [ending.metrics.queue_ms, ending.metrics.inference_ms, ending.metrics.batch_size] } : {}),
    ...(ending.error ? { x: [ending.error.code, ending.error.message] } : {}),
    ...(ending.outputs?.length ? { o: ending.outputs.map((o) => [o.name, o.datatype, o.shape] as [string, Exclude<Datatype, 'BYTES'>, number[]]) } : {}),
    ...(job.metadata ? { md: job.metadata } : {}),
    ...(job.webhook ? { w: job.webhook, wf: (job.webhook_events_filter ?? ['completed']).join(',') } : {}),
    ...(job.traceparent && job.webhook ? { tp: job.traceparent } : {}),
  };
  const head = Buffer.from(JSON.stringify(header) + '\n');
  if (!ending.outputs?.length) return head;
  return Buffer.concat([head, ...ending.outputs.map((o) => o.bytes)]);
}

/** The header of a stored record and where its output bytes start. */
export function decodeRecord(stored: Buffer): { header: RecordHeader; body: Buffer } {
  const newline = stored.indexOf(0x0a);
  if (newline < 0) throw new Error('not a job record');
  return { header: JSON.parse(stored.toString('utf8', 0, newline)) as RecordHeader, body: stored.subarray(newline + 1) };
}

/** The tenant of a stored record, for the isolation check before anything is rendered. */
export function recordTenant(stored: Buffer): string {
  return decodeRecord(stored).header.t;
}

const iso = (ms: number): string => new Date(ms).toISOString();
const str = (s: string): string => JSON.stringify(s);
const urls = (id: string): string => `{"get":"/v1/jobs/${id}","cancel":"/v1/jobs/${id}/cancel"}`;

/**
 * An ended job as it was while it ran (its `job.started` body, as
 * renderPendingJob renders it at the take): from its record, which keeps
 * when it started.
 */
export function renderStartedJob(id: string, stored: Buffer): string {
  // Printed without its output, which a running job has none of (a large one would be printed, parsed and dropped).
  const { header } = decodeRecord(stored);
  const job = JSON.parse(renderEndedJob(id, stored, { header: { ...header, o: undefined }, body: Buffer.alloc(0) })) as Record<string, unknown>;
  return JSON.stringify({ ...job, status: 'running', completed_at: null, output: null, error: null, metrics: null });
}

/**
 * The public Job (docs/api.md) of an ended record, as JSON text, printed
 * straight from the stored bytes: no object is built for the output. The
 * field order is the API's, and the same as `renderPendingJob`'s. A caller
 * that has decoded the record already (to check its tenant) passes that.
 */
export function renderEndedJob(id: string, stored: Buffer, decoded: ReturnType<typeof decodeRecord> = decodeRecord(stored)): string {
  const { header: h, body } = decoded;
  let output = 'null';
  if (h.o) {
    output = '';
    let at = 0;
    for (const [name, datatype, shape] of h.o) {
      const size = elementCount(shape) * BYTES_PER_ELEMENT[datatype];
      output += (output ? ',' : '{') + str(name) + ':' + bytesJson(datatype, body.subarray(at, at + size), shape);
      at += size;
    }
    output = output ? output + '}' : '{}';
  }
  return endedHead(id, h) + output + endedTail(id, h);
}

/**
 * Output bytes past which an ended job is answered in pieces
 * (`endedJobJson`): printed whole, 1 MiB of FP32 output is ~5 MB of text
 * and ~0.1 s of the gateway's event loop, which every other request waits
 * out.
 */
export const PIECEWISE_OUTPUT_BYTES = 1024 * 1024;

/** Values of output a piece holds: ~1.3 MB of text and ~25 ms of printing for FP32. */
const PIECE_VALUES = 64 * 1024;

/** A Job's JSON text in pieces, to be sent one at a time. */
export interface JsonPieces {
  pieces: Iterable<string>;
}

/**
 * An ended job's JSON: `renderEndedJob`'s text, or, when its outputs pass
 * PIECEWISE_OUTPUT_BYTES, the same text in pieces, printed as they are
 * taken (so a sender that yields between them never holds the event loop
 * for long).
 */
export function endedJobJson(id: string, stored: Buffer, decoded: ReturnType<typeof decodeRecord> = decodeRecord(stored)): string | JsonPieces {
  // A record whose output bytes are not what its header's shapes say is printed whole, to fail before the
  // answer starts (a 500 the gateway logs) rather than midway through it.
  if (decoded.body.byteLength <= PIECEWISE_OUTPUT_BYTES || outputBytesOf(decoded.header) !== decoded.body.byteLength) return renderEndedJob(id, stored, decoded);
  return { pieces: renderEndedJobPieces(id, decoded, PIECE_VALUES) };
}

/** The output bytes a record's header says follow it. */
function outputBytesOf(h: RecordHeader): number {
  let n = 0;
  for (const [, datatype, shape] of h.o ?? []) n += elementCount(shape) * BYTES_PER_ELEMENT[datatype];
  return n;
}

/** `renderEndedJob`'s text in pieces of about `pieceValues` output values each. */
export function* renderEndedJobPieces(id: string, decoded: ReturnType<typeof decodeRecord>, pieceValues: number): Generator<string> {
  const { header: h, body } = decoded;
  if (!h.o) {
    yield endedHead(id, h) + 'null' + endedTail(id, h);
    return;
  }
  yield endedHead(id, h) + '{';
  let at = 0;
  for (const [k, [name, datatype, shape]] of h.o.entries()) {
    const size = elementCount(shape) * BYTES_PER_ELEMENT[datatype];
    yield (k ? ',' : '') + str(name) + ':';
    yield* bytesJsonPieces(datatype, body.subarray(at, at + size), shape, pieceValues);
    at += size;
  }
  yield '}' + endedTail(id, h);
}

/** An ended Job's JSON up to its output's value. */
function endedHead(id: string, h: RecordHeader): string {
  return (
    `{"id":${str(id)},"object":"job","model":${str(h.m)},"version":${str(h.v)},"status":"${h.s}",` +
    `"created_at":"${iso(h.c)}","started_at":${h.b === undefined ? 'null' : `"${iso(h.c + h.b)}"`},"completed_at":"${iso(h.c + h.e)}",` +
    `"output":`
  );
}

/** An ended Job's JSON after its output's value. */
function endedTail(id: string, h: RecordHeader): string {
  return (
    `,"error":${h.x ? `{"code":${str(h.x[0])},"message":${str(h.x[1])}}` : 'null'},` +
    `"metadata":${h.md ? JSON.stringify(h.md) : 'null'},` +
    `"metrics":${h.q ? `{"queue_ms":${h.q[0]},"inference_ms":${h.q[1]},"batch_size":${h.q[2]}}` : 'null'},` +
    `"webhook":${h.w ? str(h.w) : 'null'},"webhook_events_filter":${JSON.stringify(h.wf ? h.wf.split(',') : [])},"urls":${urls(id)}}`
  );
}

/** A job that has not ended, from its envelope: `queued`, or `running` since `startedAt`. */
export function renderPendingJob(id: string, model: string, version: string, job: EnvelopeJob, startedAt: number | null): string {
  const filter: WebhookEventFilter[] = job.webhook ? (job.webhook_events_filter ?? ['completed']) : [];
  return (
    `{"id":${str(id)},"object":"job","model":${str(model)},"version":${str(version)},"status":"${startedAt === null ? 'queued' : 'running'}",` +
    `"created_at":"${iso(job.created_at)}","started_at":${startedAt === null ? 'null' : `"${iso(startedAt)}"`},"completed_at":null,` +
    `"output":null,"error":null,"metadata":${job.metadata ? JSON.stringify(job.metadata) : 'null'},"metrics":null,` +
    `"webhook":${job.webhook ? str(job.webhook) : 'null'},"webhook_events_filter":${JSON.stringify(filter)},"urls":${urls(id)}}`
  );
}
