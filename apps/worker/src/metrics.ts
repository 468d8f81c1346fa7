import { Counter, Gauge, Histogram } from 'prom-client';
import { FastHistogram, ScrapedMetrics } from '@infer/metrics';
import { BATCH_SIZE_BUCKETS, type ModelVersion } from '@infer/models';
import type { Run } from './interactive/microbatch.js';

/** How a webhook delivery attempt went: delivered, failed with another attempt scheduled, or failed for good. */
export type WebhookAttemptOutcome = 'succeeded' | 'retrying' | 'failed';

/**
 * Seconds, for the latency of a job (queue wait, submit to end): from a millisecond to a day. A run alone
 * may last WORKER_MAX_RUN_MS (15 min by default) and a job may wait up to its 24 h `Cancel-After`: such a
 * job still lands in a finite bucket, so histogram_quantile can say how long it took.
 */
const JOB_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 21600, 86400];

type Inc = { inc(value?: number): void };
type Observe = { observe(value: number): void };

/**
 * The worker's Prometheus metrics, served on WORKER_METRICS_PORT
 * (metrics-server.ts). Names follow Triton's where the meaning is the same
 * (nv_inference_count → infer_inference_count_total, …), in seconds rather
 * than microseconds, as Prometheus prefers.
 */
export class WorkerMetrics extends ScrapedMetrics {
  /** Metrics off (createWorker's `metrics: false`): nothing counted, `/metrics` answers 404 (`/healthz` stays). */
  static off(): WorkerMetrics {
    return new WorkerMetricsOff();
  }

  /** False for `WorkerMetrics.off()`: nothing is counted and there is nothing to scrape. */
  readonly enabled: boolean = true;
  readonly up = new Gauge({
    name: 'infer_worker_up',
    help: 'Always 1 while this worker process runs: a scrape that finds it is a live worker',
    registers: [this.registry],
  });
  readonly batchSize = new FastHistogram({
    name: 'infer_batch_size',
    help: 'Instances per ONNX Runtime run (interactive micro-batches and bulk slices)',
    labelNames: ['model', 'version'] as const,
    buckets: [...BATCH_SIZE_BUCKETS],
    registers: [this.registry],
  });
  readonly inferenceSeconds = new FastHistogram({
    name: 'infer_inference_duration_seconds',
    help: 'Time inside InferenceSession.run per run (Triton: nv_inference_compute_infer_duration_us)',
    labelNames: ['model', 'version'] as const,
    // A run may hold the event loop up to WORKER_MAX_RUN_MS (15 min by default): a slow model's or a large
    // batch's runs of seconds or minutes get finite buckets, so histogram_quantile can say how long they took.
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900],
    registers: [this.registry],
  });
  readonly execCount = new Counter({
    name: 'infer_inference_exec_count_total',
    help: 'ONNX Runtime runs (Triton: nv_inference_exec_count); instances per run = inference_count / exec_count',
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });
  readonly inferenceCount = new Counter({
    name: 'infer_inference_count_total',
    help: 'Instances run through ONNX Runtime, jobs and bulk rows alike (Triton: nv_inference_count)',
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });
  readonly queueSeconds = new FastHistogram({
    name: 'infer_inference_queue_duration_seconds',
    help: "A job's wait from submit until a worker took it, its queue_ms (Triton: nv_inference_queue_duration_us)",
    labelNames: ['model', 'version'] as const,
    buckets: JOB_SECONDS,
    registers: [this.registry],
  });
  readonly requestSeconds = new FastHistogram({
    name: 'infer_inference_request_duration_seconds',
    help: 'A job run here, from submit until its result was written (Triton: nv_inference_request_duration_us)',
    labelNames: ['model', 'version'] as const,
    buckets: JOB_SECONDS,
    registers: [this.registry],
  });
  readonly jobsEnded = new Counter({
    name: 'infer_jobs_ended_total',
    help: 'Jobs ended by this worker: succeeded, failed, or canceled (deadline_exceeded) (Triton: nv_inference_request_success/failure)',
    labelNames: ['model', 'version', 'status'] as const,
    registers: [this.registry],
  });
  readonly bulkRows = new Counter({
    name: 'infer_bulk_rows_total',
    help: 'Rows of bulk batches ended by this worker, by status',
    labelNames: ['model', 'version', 'status'] as const,
    registers: [this.registry],
  });
  readonly webhookDeliveries = new Counter({
    name: 'infer_webhook_deliveries_total',
    help: 'Webhook delivery attempts by outcome: succeeded, retrying (failed, another attempt scheduled), failed (for good)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly webhookSeconds = new Histogram({
    name: 'infer_webhook_delivery_duration_seconds',
    help: 'Webhook delivery attempt latency (request until answer, error or timeout), by outcome',
    labelNames: ['outcome'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  private readonly webhookChildren = new Map<WebhookAttemptOutcome, { count: Inc; seconds: Observe }>();

  constructor() {
    super();
    this.up.set(1);
  }

  /** One model version's metrics, labels bound once (the batcher and the bulk worker call them per run and per job). */
  forVersion(model: Pick<ModelVersion, 'name' | 'version'>): VersionMetrics {
    return new VersionMetrics(this, model.name, model.version);
  }

  /** One webhook delivery attempt. */
  webhookAttempt(outcome: WebhookAttemptOutcome, durationMs: number): void {
    let child = this.webhookChildren.get(outcome);
    if (!child) {
      child = { count: this.webhookDeliveries.labels({ outcome }), seconds: this.webhookSeconds.labels({ outcome }) };
      this.webhookChildren.set(outcome, child);
    }
    child.count.inc();
    child.seconds.observe(durationMs / 1000);
  }
}

/**
 * The worker's metrics switched off, for measuring what they cost (the
 * `observability` bench section). createWorker gives its model workers no
 * metrics at all then (they take them as optional); this stands in where a
 * WorkerMetrics is expected.
 */
class WorkerMetricsOff extends WorkerMetrics {
  override readonly enabled: boolean = false;
  override webhookAttempt(): void {}
  override async scrape(): Promise<string> {
    return '';
  }
}

/** The metrics of one model version on a worker, with their children made once (the per-run and per-job histograms are FastHistograms: no label work when observed). */
export class VersionMetrics {
  private readonly batchSize: Observe;
  private readonly inferenceSeconds: Observe;
  private readonly execCount: Inc;
  private readonly inferenceCount: Inc;
  private readonly queueSeconds: Observe;
  private readonly requestSeconds: Observe;
  private readonly ended: Record<'succeeded' | 'failed' | 'canceled', Inc>;
  private readonly rows: Record<'succeeded' | 'failed', Inc>;

  constructor(metrics: WorkerMetrics, model: string, version: string) {
    const labels = { model, version };
    this.batchSize = metrics.batchSize.labels(labels);
    this.inferenceSeconds = metrics.inferenceSeconds.labels(labels);
    this.execCount = metrics.execCount.labels(labels);
    this.inferenceCount = metrics.inferenceCount.labels(labels);
    this.queueSeconds = metrics.queueSeconds.labels(labels);
    this.requestSeconds = metrics.requestSeconds.labels(labels);
    // Label order model, version, status: the text tests match keeps it.
    const ended = (status: string) => metrics.jobsEnded.labels({ model, version, status });
    this.ended = { succeeded: ended('succeeded'), failed: ended('failed'), canceled: ended('canceled') };
    const rows = (status: string) => metrics.bulkRows.labels({ model, version, status });
    this.rows = { succeeded: rows('succeeded'), failed: rows('failed') };
    // Present at 0 from the moment the version is served, so a failure ratio (rate of failed over rate of
    // all) has its series before the first failure, as the gateway's rejection counters do.
    for (const child of [...Object.values(this.ended), ...Object.values(this.rows)]) child.inc(0);
  }

  /** ONNX Runtime runs: each one's size and time. */
  runs(runs: readonly Run[]): void {
    let instances = 0;
    for (const run of runs) {
      this.batchSize.observe(run.size);
      this.inferenceSeconds.observe(run.ms / 1000);
      instances += run.size;
    }
    this.execCount.inc(runs.length);
    this.inferenceCount.inc(instances);
  }

  /** A job that ran: how long it queued, and from submit to its end. */
  jobRan(queueMs: number, totalMs: number): void {
    this.queueSeconds.observe(queueMs / 1000);
    this.requestSeconds.observe(Math.max(0, totalMs) / 1000);
  }

  jobEnded(status: 'succeeded' | 'failed' | 'canceled'): void {
    this.ended[status].inc();
  }

  bulkRowsEnded(succeeded: number, failed: number): void {
    if (succeeded > 0) this.rows.succeeded.inc(succeeded);
    if (failed > 0) this.rows.failed.inc(failed);
  }
}
