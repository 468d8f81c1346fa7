import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Link } from '@opentelemetry/api';
import type { EnvelopeJob } from '@infer/contract';
import type { ModelVersion } from '@infer/models';
import { parseTraceparent, type Tracing } from '@infer/tracing';
import type { InstanceResult, Run } from './microbatch.js';

/** One job of a micro-batch, as a trace needs it: what its envelope says, when its envelope was taken, how it ran. */
export interface TracedJob {
  job: EnvelopeJob;
  takenAt: number;
  result: InstanceResult;
}

/**
 * The spans of one micro-batch, made once it has run (call only when
 * tracing). A micro-batch serves many jobs, each with its own trace, so:
 *
 * - the batch is a span of its own trace (`microbatch <model>`), with a link
 *   to each job's enqueue span, and a child `InferenceSession.run` per run
 *   (per shape group; more when a failed run was bisected);
 * - each traced job gets, in its own trace (children of its enqueue span),
 *   `queue wait` (accepted → its envelope taken) and `infer <model>` (its
 *   part of the batch: the batch's start to its end, with the batch size, its
 *   status, and a link back to the batch span).
 *
 * Spans are made after the fact with their real start and end times: nothing
 * runs between `session.run`s for tracing's sake.
 */
export function traceMicrobatch(tracing: Tracing, model: ModelVersion, jobs: readonly TracedJob[], runs: readonly Run[], startedAt: number, completedAt: number): void {
  const attributes = { 'infer.model': model.name, 'infer.model.version': model.version, 'infer.batch.size': jobs.length };
  const links: Link[] = [];
  for (const { job } of jobs) {
    const context = parseTraceparent(job.traceparent);
    if (context) links.push({ context, attributes: { 'infer.job.id': job.id } });
  }
  const batch = tracing.startSpan(`microbatch ${model.name}`, { kind: SpanKind.CONSUMER, startTime: startedAt, attributes, links });
  const batchLink: Link[] = [{ context: batch.spanContext() }];
  const runParent = trace.setSpan(ROOT_CONTEXT, batch);
  for (const run of runs) {
    const end = run.endedAt ?? completedAt;
    tracing
      .startSpan('InferenceSession.run', { kind: SpanKind.INTERNAL, startTime: end - run.ms, attributes: { ...attributes, 'infer.batch.size': run.size } }, runParent)
      .end(end);
  }
  for (const { job, takenAt, result } of jobs) {
    if (!job.traceparent) continue;
    tracing.startSpan('queue wait', { kind: SpanKind.INTERNAL, startTime: job.created_at, attributes: { 'infer.job.id': job.id } }, job.traceparent).end(Math.max(job.created_at, takenAt));
    const span = tracing.startSpan(
      `infer ${model.name}`,
      {
        kind: SpanKind.CONSUMER,
        startTime: startedAt,
        links: batchLink,
        attributes: { ...attributes, 'infer.job.id': job.id, 'infer.batch.size': result.batchSize, 'infer.inference_ms': result.inferenceMs },
      },
      job.traceparent,
    );
    if (!result.ok) span.setStatus({ code: SpanStatusCode.ERROR, message: result.error.message });
    span.end(completedAt);
  }
  batch.end(completedAt);
}
