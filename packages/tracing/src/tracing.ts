import { ROOT_CONTEXT, trace, type Context, type Span, type SpanOptions, type Tracer, type TracerProvider } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { BullmqTelemetry } from './bullmq-telemetry.js';
import { contextOfTraceparent, formatTraceparent } from './traceparent.js';

/** How long one export of spans may take: a hung collector costs a batch of spans, never a request or a shutdown. */
const EXPORT_TIMEOUT_MS = 2_000;
/** The longest a shutdown waits for the last spans to go. */
const SHUTDOWN_WAIT_MS = 2_000;

export interface TracingOptions {
  /** `service.name` of the spans: infer-gateway, infer-worker. */
  serviceName: string;
  /** Config.otlpEndpoint (OTEL_EXPORTER_OTLP_ENDPOINT): export over OTLP/HTTP, protobuf, to `<endpoint>/v1/traces`. */
  endpoint?: string | undefined;
  /** A tracer provider of the caller's (tests: an in-memory exporter); tracing is on with it, endpoint or not. */
  provider?: TracerProvider | undefined;
  /** Told when a batch of spans could not be exported (the collector refused, hung or is not there): they are dropped. */
  onExportError?: ((err: Error) => void) | undefined;
}

/**
 * Now, in epoch ms, on the clock OpenTelemetry puts spans on: this host's
 * own (the performance timeline), not the platform's. For the span times a
 * process takes itself (a model run's end, a micro-batch's start), so that
 * they line up with the spans OpenTelemetry times.
 */
export function spanTime(): number {
  return performance.timeOrigin + performance.now();
}

/** The exporter, telling `onError` of each batch it could not send (OpenTelemetry itself only tells its own diag logger, off by default). */
class ReportingExporter implements SpanExporter {
  constructor(
    private readonly inner: SpanExporter,
    private readonly onError: (err: Error) => void,
  ) {}

  export(...[spans, done]: Parameters<SpanExporter['export']>): void {
    this.inner.export(spans, (result) => {
      // 0 is ExportResultCode.SUCCESS (@opentelemetry/core, not a dependency of its own here).
      if (result.code !== 0) this.onError(result.error ?? new Error(`${spans.length} spans could not be exported`));
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/**
 * A process's tracing, or its absence. Every tracing step on a hot path is
 * behind `if (tracing.enabled)`: with OTEL_EXPORTER_OTLP_ENDPOINT unset (and
 * no provider given) no span object is made, no traceparent is formatted or
 * carried, and BullMQ gets no `telemetry` option; that one boolean is all it
 * costs.
 *
 * The platform's trace of a job, across processes (the W3C `traceparent`
 * travels in the job's envelope entry, its record and its webhook jobs):
 *
 *   POST /v1/jobs (gateway, SERVER; child of the client's traceparent if sent)
 *   └─ enqueue (gateway, PRODUCER: the job's wait for its envelope's write)
 *      ├─ queue wait (worker: created → taken)
 *      ├─ infer <model> (worker: this job's part of a micro-batch, linked to the batch span)
 *      └─ add webhooks.job.completed → process webhooks (BullMQ's spans: the delivery)
 *
 *   microbatch <model> (worker, its own trace: one run for many jobs, a link to each job's enqueue span)
 *   └─ InferenceSession.run (one per shape group)
 */
export class Tracing {
  /** Tracing off: nothing is traced, nothing is carried. */
  static readonly off = new Tracing(false, trace.getTracerProvider().getTracer('infer'), undefined);

  readonly bullmq: BullmqTelemetry | undefined;

  private constructor(
    readonly enabled: boolean,
    readonly tracer: Tracer,
    private readonly owned: BasicTracerProvider | undefined,
  ) {
    this.bullmq = enabled ? new BullmqTelemetry(tracer) : undefined;
  }

  static create(options: TracingOptions): Tracing {
    if (options.provider) return new Tracing(true, options.provider.getTracer(options.serviceName), undefined);
    if (!options.endpoint) return Tracing.off;
    const otlp = new OTLPTraceExporter({ url: `${options.endpoint.replace(/\/+$/, '')}/v1/traces`, timeoutMillis: EXPORT_TIMEOUT_MS });
    const exporter = options.onExportError ? new ReportingExporter(otlp, options.onExportError) : otlp;
    const provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': options.serviceName }),
      spanProcessors: [
        new BatchSpanProcessor(exporter, { exportTimeoutMillis: EXPORT_TIMEOUT_MS }),
      ],
    });
    return new Tracing(true, provider.getTracer(options.serviceName), provider);
  }

  /** Start a span under a parent given as a context or a traceparent (none: a new trace). Call only when enabled. */
  startSpan(name: string, options: SpanOptions, parent?: Context | string): Span {
    const ctx = typeof parent === 'string' ? contextOfTraceparent(parent) : (parent ?? ROOT_CONTEXT);
    return this.tracer.startSpan(name, options, ctx);
  }

  /** The span as a traceparent: what a job carries to the next process. */
  traceparentOf(span: Span): string {
    return formatTraceparent(span.spanContext());
  }

  /**
   * Send what is buffered and stop (a provider given by the caller is the
   * caller's to stop). A collector that hangs or refuses gets at most
   * SHUTDOWN_WAIT_MS: the exporter's own retries (five, ten seconds each by
   * default) would hold the process past its shutdown deadline.
   */
  async shutdown(): Promise<void> {
    if (!this.owned) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.owned.shutdown().catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, SHUTDOWN_WAIT_MS)))]);
    clearTimeout(timer);
  }
}
