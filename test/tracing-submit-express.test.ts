import http from 'node:http';
import { expect } from 'chai';
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { loadConfig } from '@infer/config';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { deletePrefix, SHIPPED_MODELS, TEST_KEY, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * README "Traces": "a client's own `traceparent` header on `POST /v1/jobs`
 * makes the job part of the client's trace", and the job's enqueue span is
 * the request span's child (its traceparent then travels with the job to the
 * worker). The job routes are served two ways: the fast dispatch
 * (routes/jobs.ts jobDispatch), which passes the request span's context to
 * JobHandlers.submit, and the Express routes for what the dispatch leaves
 * (mountJobRoutes), which call submit without it. A POST /v1/jobs whose
 * request-target is in absolute form (`POST http://host/v1/jobs HTTP/1.1`,
 * which RFC 9112 §3.2.2 says a server must accept) is one the dispatch
 * leaves to Express: the job is accepted, the request span continues the
 * client's trace, but the job's enqueue span (and with it every span the
 * worker makes for the job) starts a trace of its own.
 */

function post(port: number, path: string, body: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('a job submitted through the Express job route keeps the client\'s trace', function () {
  this.timeout(30_000);
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const prefix = uniquePrefix('obs-submit-trace');
  let gateway: Gateway;
  let port: number;

  before(async () => {
    const config = loadConfig({ REDIS_URL: TEST_REDIS_URL, MODEL_REPOSITORY: SHIPPED_MODELS, QUEUE_PREFIX: prefix, API_KEYS: `tenant-a:${TEST_KEY}` });
    // No worker: the job stays queued; only the gateway's spans are looked at.
    gateway = await createGateway(config, silentLogger, { tracerProvider: provider });
    port = await gateway.listen(0, '127.0.0.1');
  });

  after(async () => {
    await gateway?.close();
    await deletePrefix(TEST_REDIS_URL, prefix);
    await provider.shutdown();
  });

  it('makes the enqueue span the request span\'s child, in the client\'s trace (absolute-form request-target)', async () => {
    const clientTrace = '4cf7651916cd43dd8448eb211c80319c';
    const body = JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } });
    const status = await post(port, `http://127.0.0.1:${port}/v1/jobs`, body, { authorization: `Bearer ${TEST_KEY}`, traceparent: `00-${clientTrace}-b7ad6b7169203331-01` });
    expect(status).to.equal(202);

    const spans = () => exporter.getFinishedSpans();
    const request = await waitUntil(() => spans().find((s) => s.kind === SpanKind.SERVER && s.name === 'POST /v1/jobs'), 5000, 'the request span');
    const enqueue = await waitUntil(() => spans().find((s) => s.name === 'enqueue'), 5000, 'the enqueue span');
    // The request span continues the client's trace either way.
    expect(request.spanContext().traceId).to.equal(clientTrace);
    // The job's trace: the enqueue span under the request span, in the client's trace.
    expect(enqueue.spanContext().traceId, "the enqueue span's trace").to.equal(clientTrace);
    expect(enqueue.parentSpanContext?.spanId, "the enqueue span's parent").to.equal(request.spanContext().spanId);
  });
});
