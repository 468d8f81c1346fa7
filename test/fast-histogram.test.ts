import { expect } from 'chai';
import { Histogram, Registry } from 'prom-client';
import { FastHistogram } from '@infer/metrics';

/** FastHistogram must scrape exactly as prom-client's Histogram fed the same values. */
describe('FastHistogram', () => {
  const buckets = [0.001, 0.005, 0.01, 0.1, 1];

  function pair() {
    const theirs = new Registry();
    const ours = new Registry();
    const reference = new Histogram({ name: 'h_seconds', help: 'a histogram', labelNames: ['model', 'version'] as const, buckets, registers: [theirs] });
    const fast = new FastHistogram({ name: 'h_seconds', help: 'a histogram', labelNames: ['model', 'version'] as const, buckets, registers: [ours] });
    return { theirs, ours, reference, fast };
  }

  it('prints the same text as prom-client for the same observations, bounds included', async () => {
    const { theirs, ours, reference, fast } = pair();
    // Values on, between, below and above the bounds, and a second label set.
    const values = [0, 0.0005, 0.001, 0.0010001, 0.005, 0.007, 0.01, 0.05, 0.1, 0.5, 1, 2, 100];
    const a = fast.labels({ model: 'mlp', version: '2' });
    const b = fast.labels({ model: 'ocr-cls', version: '1' });
    values.forEach((v, i) => {
      a.observe(v);
      reference.labels({ model: 'mlp', version: '2' }).observe(v);
      if (i % 3 === 0) {
        b.observe(v * 2);
        reference.labels({ model: 'ocr-cls', version: '1' }).observe(v * 2);
      }
    });
    expect(await ours.metrics()).to.equal(await theirs.metrics());
  });

  it('hands out one child per label set, and reset keeps the children counting', async () => {
    const { theirs, ours, reference, fast } = pair();
    expect(fast.labels({ model: 'mlp', version: '1' })).to.equal(fast.labels({ model: 'mlp', version: '1' }));
    const child = fast.labels({ model: 'mlp', version: '1' });
    child.observe(0.2);
    ours.resetMetrics();
    child.observe(0.003);
    reference.labels({ model: 'mlp', version: '1' }).observe(0.003);
    expect(await ours.metrics()).to.equal(await theirs.metrics());
  });

  it('merges into a registry beside prom-client metrics', async () => {
    const ours = new Registry();
    new FastHistogram({ name: 'x_seconds', help: 'x', labelNames: ['route'] as const, buckets: [1], registers: [ours] }).labels({ route: '/v1/jobs' }).observe(0.5);
    const text = await Registry.merge([ours, new Registry()]).metrics();
    expect(text).to.include('x_seconds_bucket{le="1",route="/v1/jobs"} 1');
    expect(text).to.include('x_seconds_count{route="/v1/jobs"} 1');
  });
});
