import { expect } from 'chai';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { loadConfig } from '@infer/config';
import { silentLogger } from '@infer/logger';
import { parseTraceparent } from '@infer/tracing';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { deletePrefix, SHIPPED_MODELS, TEST_KEY, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

describe('a client\'s traceparent header, malformed or odd, on a traced gateway', function () {
  this.timeout(60_000);
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const prefix = uniquePrefix('rvtp');
  let gateway: Gateway;
  let base: string;

  before(async () => {
    const config = loadConfig({ REDIS_URL: TEST_REDIS_URL, MODEL_REPOSITORY: SHIPPED_MODELS, QUEUE_PREFIX: prefix, API_KEYS: `a:${TEST_KEY}` });
    gateway = await createGateway(config, silentLogger, { tracerProvider: provider });
    base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;
  });
  after(async () => {
    await gateway?.close();
    await provider.shutdown();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  /** Submit with this traceparent; the request span and the enqueue span the gateway made for it. */
  async function submitWith(traceparent: string) {
    exporter.reset();
    const res = await fetch(`${base}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', traceparent },
      body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } }),
    });
    const status = res.status;
    await res.text();
    const request = await waitUntil(() => exporter.getFinishedSpans().find((s) => s.name === 'POST /v1/jobs'), 5_000, 'the request span');
    return { status, request };
  }

  const malformed = [
    'garbage',
    '00-',
    `00-${TRACE}-${SPAN}`,
    `00-${TRACE}-${SPAN}-0g`,
    `00-${TRACE}-${SPAN}-01`.repeat(200), // 11 kB, one header
    `\t00-${TRACE.toUpperCase()}-${SPAN}-01\t`,
    `ff-${TRACE}-${SPAN}-01`,
    `00-${'0'.repeat(32)}-${SPAN}-01`,
  ];
  for (const tp of malformed) {
    it(`never 500s on ${JSON.stringify(tp.length > 60 ? `${tp.slice(0, 60)}…` : tp)}, and starts a trace of its own`, async () => {
      const { status, request } = await submitWith(tp);
      expect(status).to.equal(202);
      expect(request.parentSpanContext, 'a parent from a malformed traceparent').to.equal(undefined);
      expect(request.spanContext().traceId).to.not.equal(TRACE);
    });
  }

  it('continues a valid one, and a future version with more fields (W3C: parse what it can)', async () => {
    for (const tp of [`00-${TRACE}-${SPAN}-01`, `01-${TRACE}-${SPAN}-01-what-comes-later`]) {
      const { status, request } = await submitWith(tp);
      expect(status).to.equal(202);
      expect(request.spanContext().traceId, tp).to.equal(TRACE);
      expect(request.parentSpanContext?.spanId, tp).to.equal(SPAN);
    }
  });

  // W3C Trace Context §3.2 / OpenTelemetry's W3CTraceContextPropagator: version 00 is exactly 55 characters;
  // anything after the flags makes a version-00 header invalid (the propagator returns null for it).
  it('refuses a version-00 traceparent with anything after its flags (parseTraceparent)', () => {
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-01-extra`)).to.equal(undefined);
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-01-`)).to.equal(undefined);
  });
});
