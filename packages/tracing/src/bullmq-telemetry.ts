import { AsyncLocalStorage } from 'node:async_hooks';
import { ROOT_CONTEXT, SpanKind as OtelSpanKind, trace, type Context, type Span as OtelSpan, type Tracer as OtelTracer } from '@opentelemetry/api';
import { SpanKind, type Attributes, type ContextManager, type Exception, type Span, type Telemetry } from 'bullmq';
import { contextOfTraceparent, formatTraceparent } from './traceparent.js';

/**
 * BullMQ's `telemetry` option (its Telemetry interface) over the platform's
 * tracer, for the queues that use BullMQ's own add and process: the bulk
 * queues and the webhook queue. BullMQ then makes a producer span per add,
 * stores the trace context in the job's opts (`telemetry.metadata`) and makes
 * the consumer's `process` span its child, in whichever process runs it.
 *
 * Why not bullmq-otel, BullMQ's add-on for this: it binds to OpenTelemetry's
 * globals (the global tracer provider, propagator and context manager), so
 * it cannot take the tracer provider a gateway or worker is given (tests run
 * several in one process, each with its own), and it needs a global context
 * manager registered. This is the same ~40 lines on an explicit tracer, with
 * a context manager of its own (AsyncLocalStorage) and the W3C traceparent as
 * the metadata, the same string the interactive path carries.
 */
export class BullmqTelemetry implements Telemetry<Context> {
  readonly tracer: { startSpan(name: string, options?: { kind: SpanKind }, context?: Context): Span<Context> };
  readonly contextManager: ContextManager<Context> & { active(): Context };

  constructor(otelTracer: OtelTracer) {
    const storage = new AsyncLocalStorage<Context>();
    this.tracer = {
      startSpan: (name, options, ctx) => new BullmqSpan(otelTracer.startSpan(name, { kind: toOtelKind(options?.kind) }, ctx ?? storage.getStore() ?? ROOT_CONTEXT)),
    };
    this.contextManager = {
      with: (ctx, fn) => storage.run(ctx, fn),
      active: () => storage.getStore() ?? ROOT_CONTEXT,
      root: () => ROOT_CONTEXT,
      getMetadata: (ctx) => {
        const sc = trace.getSpanContext(ctx);
        return sc ? formatTraceparent(sc) : '';
      },
      fromMetadata: (active, metadata) => contextOfTraceparent(metadata, active),
    };
  }

  /** Run `fn` with the traceparent's span as the active parent: what BullMQ's add spans are made under. */
  inTrace<T>(traceparent: string | undefined, fn: () => T): T {
    if (!traceparent) return fn();
    return this.contextManager.with(contextOfTraceparent(traceparent), fn);
  }
}

class BullmqSpan implements Span<Context> {
  constructor(private readonly span: OtelSpan) {}
  setSpanOnContext(ctx: Context): Context {
    return trace.setSpan(ctx, this.span);
  }
  setAttribute(key: string, value: Attributes[string]): void {
    if (value !== undefined) this.span.setAttribute(key, value);
  }
  setAttributes(attributes: Attributes): void {
    for (const [k, v] of Object.entries(attributes)) if (v !== undefined) this.span.setAttribute(k, v);
  }
  addEvent(name: string, attributes?: Attributes): void {
    this.span.addEvent(name, attributes as Record<string, string | number | boolean> | undefined);
  }
  recordException(exception: Exception): void {
    this.span.recordException(exception as Error);
  }
  end(): void {
    this.span.end();
  }
}

function toOtelKind(kind: SpanKind | undefined): OtelSpanKind {
  switch (kind) {
    case SpanKind.PRODUCER:
      return OtelSpanKind.PRODUCER;
    case SpanKind.CONSUMER:
      return OtelSpanKind.CONSUMER;
    case SpanKind.CLIENT:
      return OtelSpanKind.CLIENT;
    case SpanKind.SERVER:
      return OtelSpanKind.SERVER;
    default:
      return OtelSpanKind.INTERNAL;
  }
}
