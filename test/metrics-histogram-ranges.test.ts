import { expect } from 'chai';
import { GatewayMetrics } from '../apps/gateway/src/index.js';
import { WorkerMetrics } from '../apps/worker/src/index.js';
import { MAX_BATCH_SIZE_LIMIT } from '@infer/models';
import { loadConfig } from '@infer/config';
import { parse } from './helpers/prometheus.js';

/**
 * A model's config.json may say `max_batch_size` up to 4096 (packages/models/src/model-config.ts): a
 * worker then stacks up to 4096 instances into one run (infer_batch_size, "is batching working?") and a
 * gateway puts up to that many jobs in one envelope (infer_envelope_instances). Past the largest finite
 * bucket an observation is only in +Inf, and histogram_quantile (the dashboard's "Instances per run"
 * p50/p99) answers that bound: a model batching 4096 at a time reads as 256.
 */
const MAX_BATCH_SIZE = MAX_BATCH_SIZE_LIMIT;

function largestFinite(text: string, name: string): number {
  return Math.max(...parse(text).filter((s) => s.name === `${name}_bucket` && s.labels.le !== '+Inf').map((s) => Number(s.labels.le)));
}

describe('size histograms reach the largest max_batch_size allowed', () => {
  it('infer_batch_size (worker): a run of 4096 instances is in a finite bucket', async () => {
    const metrics = new WorkerMetrics();
    metrics.forVersion({ name: 'big', version: '1' }).runs([{ size: MAX_BATCH_SIZE, ms: 5, endedAt: Date.now() }]);
    expect(largestFinite(await metrics.scrape(), 'infer_batch_size')).to.be.at.least(MAX_BATCH_SIZE);
  });

  it('infer_envelope_instances (gateway): an envelope of 4096 jobs is in a finite bucket', async () => {
    const metrics = new GatewayMetrics();
    metrics.envelopeWritten('big', '1', MAX_BATCH_SIZE);
    expect(largestFinite(await metrics.registry.metrics(), 'infer_envelope_instances')).to.be.at.least(MAX_BATCH_SIZE);
  });
});

/**
 * infer_inference_request_duration_seconds is "a job from submit until its result was written"
 * (docs/operations.md): its queue wait plus its run. A run alone may last up to WORKER_MAX_RUN_MS
 * (15 min by default; infer_inference_duration_seconds has buckets to 900 s for that reason), so a
 * job's submit-to-end is at least that long. Past the largest finite bucket, histogram_quantile (the
 * dashboard's "Job latency p50 / p99" and the rollout guide's p99 per version) answers that bound,
 * whatever the latencies were.
 */
describe('the job latency histograms reach a job whose run is the longest allowed', () => {
  it('infer_inference_request_duration_seconds puts a 15-minute job in a finite bucket', async () => {
    const metrics = new WorkerMetrics();
    const longestRunS = loadConfig({}).workerMaxRunMs / 1000;
    // Queued 1 s, ran for the longest a run may take.
    metrics.forVersion({ name: 'slow', version: '1' }).jobRan(1_000, 1_000 + longestRunS * 1000);
    const samples = parse(await metrics.scrape()).filter((s) => s.name === 'infer_inference_request_duration_seconds_bucket' && s.labels.model === 'slow');
    const finite = samples.filter((s) => s.labels.le !== '+Inf');
    const largest = Math.max(...finite.map((s) => Number(s.labels.le)));
    expect(largest, 'largest finite bucket (s)').to.be.at.least(longestRunS + 1);
    expect(finite.find((s) => Number(s.labels.le) === largest)?.value, 'the job counted in a finite bucket').to.equal(1);
  });
});
