import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { BulkChunkPayload } from '@infer/contract';
import type { ModelVersion } from '@infer/models';
import type { Tracing } from '@infer/tracing';
import type { ChunkResult } from './bulk-runner.js';

/** How a chunk's processing ended, as its span tells it. */
export type ChunkEnd = { written: true } | { written: false; error: string } | { stopped: true };

/**
 * The spans of one batch chunk, made once it has been processed (call only
 * when tracing): `process bulk.<model>.v<n>` (a CONSUMER span, as BullMQ's
 * own worker names a job's processing) in the upload's trace, the child of
 * the chunk's `add` span (the traceparent BullMQ stored with the job), with
 * a child `InferenceSession.run` per run. Made after the fact with their
 * real times, as a micro-batch's are: nothing runs between slices for
 * tracing's sake.
 */
export function traceChunk(
  tracing: Tracing,
  model: ModelVersion,
  queueName: string,
  p: BulkChunkPayload,
  traceparent: string | undefined,
  result: Pick<ChunkResult, 'succeeded' | 'failed' | 'runs'>,
  startedAt: number,
  end: ChunkEnd,
): void {
  const attributes = { 'infer.model': model.name, 'infer.model.version': model.version, 'infer.batch.id': p.batch, 'infer.batch.chunk': p.chunk };
  const span = tracing.startSpan(
    `process ${queueName}`,
    {
      kind: SpanKind.CONSUMER,
      startTime: startedAt,
      attributes: { ...attributes, 'infer.chunk.rows': p.rows, 'infer.chunk.succeeded': result.succeeded, 'infer.chunk.failed': result.failed },
    },
    traceparent,
  );
  if ('stopped' in end) span.setAttribute('infer.chunk.stopped', true);
  else if (!end.written) span.setStatus({ code: SpanStatusCode.ERROR, message: end.error });
  const parent = trace.setSpan(ROOT_CONTEXT, span);
  for (const run of result.runs) {
    tracing.startSpan('InferenceSession.run', { kind: SpanKind.INTERNAL, startTime: run.endedAt - run.ms, attributes: { ...attributes, 'infer.batch.size': run.size } }, parent).end(run.endedAt);
  }
  span.end();
}
