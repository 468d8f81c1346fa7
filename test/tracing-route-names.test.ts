import { expect } from 'chai';
import { InMemorySpanExporter, SimpleSpanProcessor, BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { SpanKind } from '@opentelemetry/api';
import { loadConfig } from '@infer/config';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { deletePrefix, SHIPPED_MODELS, TEST_KEY, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * An Express request's SERVER span is named as the metrics label its route
 * (route-label.ts): the full pattern, even for an error passed on out of a
 * router, the documented route for a request the guard refused before
 * routing, `unmatched` for no route. With metrics off too: the tracing
 * captures the route itself.
 */
describe('tracing: request span names are the route labels', function () {
  this.timeout(30_000);
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const prefix = uniquePrefix('trace-names');
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

  it('names each span METHOD and the route pattern, never a path', async () => {
    const get = (path: string, init: RequestInit = {}) => fetch(base + path, { ...init, headers: { authorization: `Bearer ${TEST_KEY}`, ...init.headers } });
    const answers = [
      ['GET /v1/models', 200, await get('/v1/models')],
      ['GET /v1/models/:name', 200, await get('/v1/models/mlp')],
      // 404 batch_not_found: an error thrown inside the batches router, answered after it left it.
      ['GET /v1/batches/:id', 404, await get('/v1/batches/nope')],
      ['POST /v1/batches/:id/cancel', 404, await get('/v1/batches/nope/cancel', { method: 'POST' })],
      // 401 from the guard, before Express matched a route.
      ['GET /v1/batches/:id', 401, await get('/v1/batches/nope', { headers: { authorization: 'Bearer not-a-key' } })],
      ['GET unmatched', 404, await get('/no/such/route')],
    ] as const;
    for (const [, status, res] of answers) {
      await res.arrayBuffer();
      expect(res.status).to.equal(status);
    }
    const servers = () => exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.SERVER);
    await waitUntil(() => servers().length >= answers.length, 5000, 'the request spans');
    const seen = servers().map((s) => `${s.name} ${String(s.attributes['http.response.status_code'])}`);
    expect(seen).to.have.members(answers.map(([name, status]) => `${name} ${status}`));
    for (const s of servers()) expect(s.attributes['http.route']).to.equal(s.name.slice(s.name.indexOf(' ') + 1));
  });
});
