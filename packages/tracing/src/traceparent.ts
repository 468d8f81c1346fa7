import { ROOT_CONTEXT, trace, type Context, type SpanContext } from '@opentelemetry/api';

/**
 * W3C trace context (`traceparent`, version 00) as one string: what travels
 * with each job in its envelope (EnvelopeJob.traceparent), in its ended
 * record, and with webhook deliveries. Written here rather than through a
 * propagator object: it is one line either way, and this way nothing but the
 * string is built per job.
 */
export function formatTraceparent(ctx: SpanContext): string {
  return `00-${ctx.traceId}-${ctx.spanId}-${ctx.traceFlags & 1 ? '01' : '00'}`;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;

/** A traceparent's span context (remote), or undefined for anything malformed (never trust the queue). */
export function parseTraceparent(text: string | undefined): SpanContext | undefined {
  const m = text ? TRACEPARENT.exec(text.trim()) : null;
  if (!m || m[1] === 'ff' || /^0+$/.test(m[2]!) || /^0+$/.test(m[3]!)) return undefined;
  // Version 00 is exactly its four fields; only a later version may carry more after them (W3C trace context).
  if (m[1] === '00' && text!.trim().length !== 55) return undefined;
  return { traceId: m[2]!, spanId: m[3]!, traceFlags: parseInt(m[4]!, 16) & 1, isRemote: true };
}

/** A context whose parent span is the traceparent's (the root context when there is none). */
export function contextOfTraceparent(text: string | undefined, base: Context = ROOT_CONTEXT): Context {
  const sc = parseTraceparent(text);
  return sc ? trace.setSpanContext(base, sc) : base;
}
