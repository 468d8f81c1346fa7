import { Counter, Histogram, Registry } from 'prom-client';
import type { ModelVersion } from '@infer/models';
import type { Run } from './interactive/microbatch.js';

/** The worker's Prometheus metrics; served on WORKER_METRICS_PORT when set. */
export class WorkerMetrics {
  readonly registry = new Registry();
  readonly batchSize = new Histogram({
    name: 'infer_batch_size',
    help: 'Instances per ONNX Runtime run',
    labelNames: ['model', 'version'] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [this.registry],
  });
  readonly inferenceSeconds = new Histogram({
    name: 'infer_inference_duration_seconds',
    help: 'Time inside InferenceSession.run per batch',
    labelNames: ['model', 'version'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [this.registry],
  });
  readonly jobsEnded = new Counter({
    name: 'infer_jobs_ended_total',
    help: 'Jobs run to an end by this worker',
    labelNames: ['model', 'version', 'status'] as const,
    registers: [this.registry],
  });

  /** One micro-batch's runs: each run's size and ONNX Runtime time. */
  observeRuns(model: ModelVersion, runs: readonly Run[]): void {
    const labels = { model: model.name, version: model.version };
    for (const run of runs) {
      this.batchSize.observe(labels, run.size);
      this.inferenceSeconds.observe(labels, run.ms / 1000);
    }
  }

  jobEnded(model: ModelVersion, status: 'succeeded' | 'failed'): void {
    this.jobsEnded.inc({ model: model.name, version: model.version, status });
  }
}
