import { expect } from 'chai';
import http from 'node:http';
import type net from 'node:net';
import { loadConfig } from '@infer/config';
import { createLogger, silentLogger } from '@infer/logger';
import { Tracing } from '@infer/tracing';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { deletePrefix, SHIPPED_MODELS, TEST_KEY, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { freePort } from './helpers/redis-server.js';
import { Spawned } from './helpers/spawned.js';
import { LogCapture } from './helpers/log-capture.js';
import { waitUntil } from './helpers/wait.js';

/**
 * The tracing exporter's collector unreachable: one that takes the connection and never answers (a hung
 * collector, a black-holed load balancer) and one that refuses. Tracing is a side channel: it must neither
 * slow requests nor hold a shutdown (README, Stopping a process: a gateway exits 0 within its 10 s deadline).
 */
interface Collector {
  url: string;
  hits: number;
  close(): Promise<void>;
}

async function hungCollector(): Promise<Collector> {
  const sockets = new Set<net.Socket>();
  const c = { hits: 0 } as Collector;
  const server = http.createServer((req) => {
    c.hits++;
    req.resume(); // read the spans, never answer
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  c.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  c.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return c;
}

const submit = (base: string) =>
  fetch(`${base}/v1/jobs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } }),
  });

describe('an OTLP collector that hangs or refuses', function () {
  this.timeout(60_000);
  let collector: Collector;
  const prefixes: string[] = [];

  before(async () => {
    collector = await hungCollector();
  });
  after(async () => {
    await collector?.close();
    for (const p of prefixes) await deletePrefix(TEST_REDIS_URL, p);
  });

  function configFor(endpoint: string) {
    const prefix = uniquePrefix('rvotlp');
    prefixes.push(prefix);
    return loadConfig({ REDIS_URL: TEST_REDIS_URL, MODEL_REPOSITORY: SHIPPED_MODELS, QUEUE_PREFIX: prefix, API_KEYS: `a:${TEST_KEY}`, WORKER_METRICS_PORT: '0', OTEL_EXPORTER_OTLP_ENDPOINT: endpoint });
  }

  it('a hung collector slows no request', async () => {
    const gateway = await createGateway(configFor(collector.url), silentLogger);
    try {
      const base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;
      const t0 = performance.now();
      for (let i = 0; i < 20; i++) expect((await submit(base)).status).to.equal(202);
      expect(performance.now() - t0, '20 submits').to.be.below(5_000);
    } finally {
      await gateway.close();
    }
  });

  it('gateway.close() does not wait out the exporter\'s timeout on a hung collector', async () => {
    const gateway: Gateway = await createGateway(configFor(collector.url), silentLogger);
    const base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;
    expect((await submit(base)).status).to.equal(202); // a span buffered, to be flushed at close
    const t0 = performance.now();
    await gateway.close();
    // Measured: ~10,050 ms (OTLPTraceExporter's default 10 s timeout), i.e. the gateway's whole shutdown deadline.
    expect(performance.now() - t0, 'close with a hung collector (ms)').to.be.below(3_000);
  });

  it('worker.close() does not wait out the exporter\'s timeout on a hung collector', async () => {
    const config = configFor(collector.url);
    const gateway = await createGateway(config, silentLogger);
    let worker: InferenceWorker | undefined;
    try {
      worker = await createWorker(config, silentLogger, { models: gateway.models });
      await gateway.catalog.refresh();
      const base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;
      const res = await fetch(`${base}/v1/jobs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', prefer: 'wait=10' },
        body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } }),
      });
      expect(((await res.json()) as { status: string }).status).to.equal('succeeded');
      const t0 = performance.now();
      await worker.close();
      worker = undefined;
      expect(performance.now() - t0, 'worker close with a hung collector (ms)').to.be.below(3_000);
    } finally {
      await worker?.close();
      await gateway.close();
    }
  });

  it('a refusing collector (nothing listens) does not hold close either', async () => {
    const gateway = await createGateway(configFor(`http://127.0.0.1:${await freePort()}`), silentLogger);
    const base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;
    expect((await submit(base)).status).to.equal(202);
    const t0 = performance.now();
    await gateway.close();
    expect(performance.now() - t0).to.be.below(3_000);
  });

  it('a real gateway process on SIGTERM exits 0, not 1 "shutdown took longer than 10 s", with a hung collector', async () => {
    const prefix = uniquePrefix('rvotlp');
    prefixes.push(prefix);
    const port = await freePort();
    const gw = new Spawned('start:gateway', {
      REDIS_URL: TEST_REDIS_URL,
      MODEL_REPOSITORY: SHIPPED_MODELS,
      QUEUE_PREFIX: prefix,
      API_KEYS: `a:${TEST_KEY}`,
      PORT: String(port),
      HOST: '127.0.0.1',
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
    });
    try {
      await gw.waitForLog('gateway listening', 30_000);
      expect((await submit(`http://127.0.0.1:${port}`)).status).to.equal(202);
      const t0 = performance.now();
      gw.signalGroup('SIGTERM');
      const exit = await gw.exit(20_000);
      const tookMs = exit.at - t0;
      expect(gw.logged('shutdown took longer'), 'the deadline line').to.deep.equal([]);
      expect(exit.code, `exit code after ${Math.round(tookMs)} ms`).to.equal(0);
      expect(tookMs).to.be.below(5_000);
    } finally {
      gw.kill();
    }
  });
});

describe('a batch of spans the collector would not take is said, not dropped in silence', function () {
  this.timeout(30_000);

  it('Tracing tells onExportError of each batch it could not export (nothing listens at the endpoint)', async () => {
    const errors: Error[] = [];
    const tracing = Tracing.create({ serviceName: 'test', endpoint: `http://127.0.0.1:${await freePort()}`, onExportError: (err) => errors.push(err) });
    tracing.startSpan('one', {}).end();
    await tracing.shutdown();
    await waitUntil(() => errors.length > 0, 10_000, 'the failed export to be reported');
    expect(errors[0]).to.be.instanceOf(Error);
  });

  it('a gateway logs it at warn, once in 10 s however many batches fail', async () => {
    const log = new LogCapture();
    const prefix = uniquePrefix('trace-err');
    const config = loadConfig({
      REDIS_URL: TEST_REDIS_URL,
      MODEL_REPOSITORY: SHIPPED_MODELS,
      QUEUE_PREFIX: prefix,
      API_KEYS: `tenant-a:${TEST_KEY}`,
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${await freePort()}`,
    });
    const gateway = await createGateway(config, createLogger({ level: 'info', name: 'gateway', destination: log }));
    try {
      const base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;
      for (let i = 0; i < 3; i++) expect((await submit(base)).status).to.equal(202);
    } finally {
      await gateway.close();
      await deletePrefix(TEST_REDIS_URL, prefix);
    }
    await waitUntil(() => log.parsed().some((l) => String(l.msg).startsWith('traces could not be exported')), 10_000, 'the warn line');
    const lines = log.parsed().filter((l) => String(l.msg).startsWith('traces could not be exported'));
    expect(lines).to.have.length(1);
    expect(lines[0]!.level).to.equal(40);
  });
});
