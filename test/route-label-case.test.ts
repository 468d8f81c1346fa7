import { expect } from 'chai';
import { InMemorySpanExporter, SimpleSpanProcessor, BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { SpanKind } from '@opentelemetry/api';
import { loadConfig } from '@infer/config';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { deletePrefix, SHIPPED_MODELS, startPlatform, TEST_KEY, TEST_REDIS_URL, uniquePrefix, type TestPlatform } from './helpers/platform.js';
import { parse } from './helpers/prometheus.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/operations.md: `route` is "the full pattern (`/v1/batches/:id/cancel`)";
 * route-label.ts: "never its path (ids would make a label set without
 * bound)". Express matches paths case-insensitively, and the captured
 * pattern is `req.baseUrl` (the text of the request's own path that matched
 * a router's mount point) joined with the route's pattern: so every casing
 * a client sends of `/v1/models/…` or `/v1/batches/…` is a label value of its
 * own (`/V1/MODELS/:name`, `/v1/Models/:name`, …), 2^n of them for a mount
 * path of n letters. Any tenant can grow the series without bound. The
 * request spans are named the same way.
 */

const CASINGS: Array<[string, RequestInit?]> = [
  ['/v1/models/mlp'],
  ['/V1/MODELS/mlp'],
  ['/v1/Models/mlp'],
  ['/V1/models/mlp'],
  ['/v1/batches/nope'],
  ['/v1/BATCHES/nope'],
  ['/V1/Batches/nope'],
  ['/v1/batches/nope/cancel', { method: 'POST' }],
  ['/v1/bAtChEs/nope/cancel', { method: 'POST' }],
];

const EXPECTED = ['GET /v1/models/:name 200', 'GET /v1/batches/:id 404', 'POST /v1/batches/:id/cancel 404'];

describe('route labels do not depend on the path\'s letter case', function () {
  this.timeout(30_000);

  describe('metrics', () => {
    let p: TestPlatform;
    before(async () => {
      p = await startPlatform({ worker: false });
    });
    after(async () => {
      await p?.close();
    });

    it('labels every casing of a route with its one pattern', async () => {
      for (const [path, init] of CASINGS) await (await p.api(path, init ?? {})).arrayBuffer();
      const samples = parse(await (await fetch(`${p.baseUrl}/metrics`)).text());
      const seen = new Set(
        samples
          .filter((s) => s.name === 'infer_http_request_duration_seconds_count' && /models|batches/i.test(s.labels.route ?? ''))
          .map((s) => `${s.labels.method} ${s.labels.route} ${s.labels.status}`),
      );
      expect([...seen].sort()).to.deep.equal([...EXPECTED].sort());
    });
  });

  describe('tracing', () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const prefix = uniquePrefix('obs-case');
    let gateway: Gateway;
    let base: string;
    before(async () => {
      const config = loadConfig({ REDIS_URL: TEST_REDIS_URL, MODEL_REPOSITORY: SHIPPED_MODELS, QUEUE_PREFIX: prefix, API_KEYS: `tenant-a:${TEST_KEY}` });
      gateway = await createGateway(config, silentLogger, { tracerProvider: provider, metrics: false });
      base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;
    });
    after(async () => {
      await gateway?.close();
      await deletePrefix(TEST_REDIS_URL, prefix);
      await provider.shutdown();
    });

    it('names every casing\'s request span with the one pattern', async () => {
      for (const [path, init] of CASINGS) {
        await (await fetch(base + path, { ...(init ?? {}), headers: { authorization: `Bearer ${TEST_KEY}` } })).arrayBuffer();
      }
      const servers = () => exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.SERVER);
      await waitUntil(() => servers().length >= CASINGS.length, 5000, 'the request spans');
      const seen = new Set(servers().map((s) => `${s.name} ${String(s.attributes['http.response.status_code'])}`));
      expect([...seen].sort()).to.deep.equal([...EXPECTED].sort());
    });
  });
});
