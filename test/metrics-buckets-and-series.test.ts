import { expect } from 'chai';
import { REQUEST_TIME_LIMIT_MS } from '@infer/contract';
import { loadConfig } from '@infer/config';
import { GatewayMetrics } from '../apps/gateway/src/index.js';
import { WorkerMetrics } from '../apps/worker/src/index.js';
import { parse } from './helpers/prometheus.js';

/**
 * docs/operations.md: infer_inference_duration_seconds is one ONNX Runtime
 * run, and a run may last up to WORKER_MAX_RUN_MS (15 min by default);
 * infer_http_request_duration_seconds is every answer, an NDJSON upload's
 * (up to 5 min) and a `Prefer: wait` hold's (up to MAX_WAIT_SECONDS, 600 s at
 * most) too. Past the largest finite bucket an observation lands only in
 * +Inf, and histogram_quantile (the dashboard's p99 panels) then answers that
 * largest bound, whatever the durations really were: the buckets must reach
 * the longest duration the platform allows.
 */
function largestFiniteBucket(text: string, name: string): number {
  const bounds = parse(text)
    .filter((s) => s.name === `${name}_bucket` && s.labels.le !== '+Inf')
    .map((s) => Number(s.labels.le));
  expect(bounds, `${name} has buckets`).to.not.be.empty;
  return Math.max(...bounds);
}

describe('metrics: histogram buckets reach the longest durations allowed', () => {
  it('a model run: up to the default WORKER_MAX_RUN_MS', async () => {
    const metrics = new WorkerMetrics();
    const longest = loadConfig({}).workerMaxRunMs / 1000;
    metrics.forVersion({ name: 'slow', version: '1' }).runs([{ size: 8, ms: 2_500, endedAt: Date.now() }]);
    const text = await metrics.scrape();
    expect(largestFiniteBucket(text, 'infer_inference_duration_seconds')).to.be.at.least(longest);
    // The 2.5 s run is in a finite bucket, not only in +Inf.
    const within = parse(text).find((s) => s.name === 'infer_inference_duration_seconds_bucket' && s.labels.le === '2.5');
    expect(within?.value).to.equal(1);
  });

  it('an HTTP answer: up to an upload\'s time limit and the longest Prefer: wait', async () => {
    const metrics = new GatewayMetrics();
    await metrics.registry.metrics();
    const text = await metrics.registry.metrics();
    // No request observed yet: read the bounds from a child made for the purpose.
    metrics.requests.labels({ method: 'POST', route: '/v1/batches', status: '202' }).observe(250);
    const observed = await metrics.registry.metrics();
    expect(text).to.be.a('string');
    expect(largestFiniteBucket(observed, 'infer_http_request_duration_seconds')).to.be.at.least(Math.max(REQUEST_TIME_LIMIT_MS / 1000, 600));
  });
});

describe('metrics: a served version\'s outcome counters are there at 0 before any outcome', () => {
  it('infer_jobs_ended_total and infer_bulk_rows_total, every status, as soon as the version has metrics', async () => {
    const metrics = new WorkerMetrics();
    metrics.forVersion({ name: 'mlp', version: '3' });
    const samples = parse(await metrics.scrape());
    const at = (name: string, status: string) => samples.find((s) => s.name === name && s.labels.model === 'mlp' && s.labels.version === '3' && s.labels.status === status)?.value;
    for (const status of ['succeeded', 'failed', 'canceled']) expect(at('infer_jobs_ended_total', status), `jobs ${status}`).to.equal(0);
    for (const status of ['succeeded', 'failed']) expect(at('infer_bulk_rows_total', status), `bulk rows ${status}`).to.equal(0);
  });
});
