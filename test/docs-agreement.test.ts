/**
 * The documentation agrees with the code, where no other test pins it:
 *
 * - the README's configuration table and packages/config (names, defaults, ranges);
 * - docs/api.md's error table and every (code, status) the gateway's source can answer;
 * - docs/operations.md's metric tables (and the ones in docs/rollouts.md, docs/api.md)
 *   and the metrics the gateway and the worker register and serve;
 * - every TypeScript snippet of the docs type-checks against the real packages;
 * - docs/sdk.md's client options and "Routes and calls" table and the SDK;
 * - docs/cli.md's flags and commands and the CLI's command tree;
 * - the README's "Try it with curl" examples, run with curl, answer as written.
 */
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import { collected } from './helpers/cli.js';
import type { Command, Option } from 'commander';
import ts from 'typescript';
import type { Redis } from 'ioredis';
import { DEFAULT_WEBHOOK_RETRY_DELAYS_MS, apiKeyDigest, ConfigError, loadConfig, type Config } from '@infer/config';
import type { ErrorCode } from '@infer/errors';
import { processRegistry } from '@infer/metrics';
import { InferClient } from '@infer/sdk';
import { GatewayMetrics } from '../apps/gateway/src/metrics.js';
import { QueueMetrics } from '../apps/gateway/src/queue-metrics.js';
import { buildOpenApi } from '../apps/gateway/src/openapi.js';
import { ERROR_CODES } from '../apps/gateway/src/openapi/schemas.js';
import type { BulkQueues } from '../apps/gateway/src/batches/bulk-queues.js';
import { WorkerMetrics } from '../apps/worker/src/metrics.js';
import { buildProgram } from '../apps/cli/src/program.js';
import type { CliIo } from '../apps/cli/src/io.js';
import type { FleetView } from '@infer/fleet';
import { REPO_ROOT, SHIPPED_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';

const read = (...parts: string[]) => readFileSync(path.join(REPO_ROOT, ...parts), 'utf8');

/** The text of a markdown file between two headings (or to the end). */
function section(text: string, from: string, to?: string): string {
  const start = text.indexOf(from);
  expect(start, `heading ${from}`).to.be.at.least(0);
  const end = to === undefined ? text.length : text.indexOf(to, start + from.length);
  return text.slice(start, end < 0 ? text.length : end);
}

/** Fenced code blocks of a markdown text whose language matches. */
function codeBlocks(text: string, lang: RegExp): Array<{ line: number; code: string }> {
  const out: Array<{ line: number; code: string }> = [];
  // Fences may be indented (a block inside a list item): the indentation is dropped from its lines.
  for (const m of text.matchAll(/^( *)```(\w*)\n([\s\S]*?)^\1```/gm)) {
    const indent = m[1]!.length;
    const code = m[3]!.split('\n').map((l) => l.slice(Math.min(indent, l.length - l.trimStart().length))).join('\n');
    if (lang.test(m[2]!)) out.push({ line: text.slice(0, m.index).split('\n').length, code });
  }
  return out;
}

/** Every `.ts` file under the given folders, outside dist/. */
function sourceFiles(...dirs: string[]): string[] {
  const out: string[] = [];
  for (const dir of dirs) {
    for (const e of readdirSync(path.join(REPO_ROOT, dir), { recursive: true, withFileTypes: true })) {
      const file = path.join(e.parentPath, e.name);
      if (e.isFile() && file.endsWith('.ts') && !file.includes(`${path.sep}dist${path.sep}`) && !file.includes('node_modules')) out.push(file);
    }
  }
  return out;
}

describe('docs: they agree with the code', function () {
  this.timeout(60_000);

  // -------------------------------------------------------------------------
  describe("README's configuration table and packages/config", () => {
    const rows = new Map<string, { usedBy: string; meaning: string; def: string }>();
    before(() => {
      for (const line of section(read('README.md'), '## Configuration', '## Running more workers').split('\n')) {
        const m = /^\| `([A-Z][A-Z0-9_]+)` \| ([^|]+) \| (.+) \| ([^|]+) \|$/.exec(line);
        if (m) rows.set(m[1]!, { usedBy: m[2]!.trim(), meaning: m[3]!.trim(), def: m[4]!.trim() });
      }
    });

    it('lists exactly the variables loadConfig reads', () => {
      const source = read('packages', 'config', 'src', 'config.ts');
      const schema = section(source, 'const EnvSchema = z.object({', '\n});');
      const read_ = [...schema.matchAll(/^ {2}([A-Z][A-Z0-9_]+):/gm)].map((m) => m[1]!).sort();
      expect(read_.length).to.be.greaterThan(20);
      expect([...rows.keys()].sort()).to.deep.equal(read_);
      // Nothing else in the platform reads process.env for its settings (the SDK and CLI, clients, read INFER_* of their own).
      for (const file of sourceFiles('apps/gateway/src', 'apps/worker/src', 'packages').filter((f) => !f.includes(path.join('packages', 'sdk')))) {
        const text = readFileSync(file, 'utf8');
        for (const m of text.matchAll(/process\.env\.([A-Z_]+)|process\.env\[['"]([A-Z_]+)/g)) {
          expect(rows.has(m[1] ?? m[2]!) || file.endsWith(path.join('apps', 'gateway', 'src', 'main.ts')) || file.endsWith(path.join('apps', 'worker', 'src', 'main.ts')), `${path.relative(REPO_ROOT, file)} reads ${m[0]}`).to.equal(true);
        }
      }
    });

    it('gives each variable the default the table says', () => {
      const c = loadConfig({});
      /** The value as the table writes it, from the config loaded with nothing set. */
      const actual: Record<string, (c: Config) => string | undefined> = {
        REDIS_URL: (c) => c.redisUrl,
        PORT: (c) => String(c.port),
        HOST: (c) => c.host,
        MODEL_REPOSITORY: (c) => c.modelRepository,
        API_KEYS: (c) => (c.apiKeysAreDevDefault && c.apiKeyDigests.size === 1 && c.apiKeyDigests.get(apiKeyDigest('dev-key')) === 'dev' ? 'dev-key/dev' : 'other'),
        API_KEYS_FILE: () => undefined,
        ADMIN_API_KEYS: (c) => (c.adminKeyDigests.size === 0 ? undefined : 'set'),
        OTEL_EXPORTER_OTLP_ENDPOINT: (c) => c.otlpEndpoint,
        NODE_ENV: () => undefined,
        QUEUE_PREFIX: (c) => c.queuePrefix,
        RESULT_TTL_SECONDS: (c) => String(c.resultTtlMs / 1000),
        MAX_BODY_BYTES: (c) => String(c.maxBodyBytes),
        MAX_QUEUE_DEPTH: (c) => String(c.maxQueueDepth),
        MAX_OUTPUT_BYTES: (c) => String(c.maxOutputBytes),
        RATE_LIMIT_PER_SECOND: (c) => String(c.rateLimitPerSecond),
        TENANT_MAX_OPEN_BATCHES: (c) => String(c.tenantMaxOpenBatches),
        TENANT_MAX_QUEUED: (c) => (c.tenantMaxQueued === undefined ? undefined : String(c.tenantMaxQueued)),
        MAX_WAIT_SECONDS: (c) => String(c.maxWaitMs / 1000),
        BATCH_PARSE_THREAD: (c) => String(c.batchParseThread),
        WEBHOOK_ALLOW_PRIVATE: (c) => String(c.webhookAllowPrivate),
        WEBHOOK_RETRY_DELAYS_MS: (c) => c.webhookRetryDelaysMs.join(','),
        WORKER_LOCK_MS: (c) => String(c.workerLockMs),
        WORKER_MAX_RUN_MS: (c) => String(c.workerMaxRunMs),
        MODEL_POLL_SECONDS: (c) => String(c.modelPollMs / 1000),
        WORKER_MODELS: (c) => (c.workerModels.length === 0 ? undefined : c.workerModels.join(',')),
        WORKER_METRICS_PORT: (c) => String(c.workerMetricsPort),
        SHUTDOWN_FORCE_GRACE_MS: (c) => String(c.shutdownForceGraceMs),
        LOG_LEVEL: (c) => c.logLevel,
      };
      expect(Object.keys(actual).sort()).to.deep.equal([...rows.keys()].sort());
      for (const [name, row] of rows) {
        const value = actual[name]!(c);
        if (name === 'API_KEYS') {
          expect(row.def, name).to.match(/^unset: the single key `dev-key` \(tenant `dev`\)/);
          expect(value, name).to.equal('dev-key/dev');
        } else if (/^(unset|empty)\b/.test(row.def)) {
          expect(value, `${name}: the table says "${row.def}"`).to.equal(undefined);
        } else {
          const written = /^`([^`]+)`/.exec(row.def)?.[1];
          expect(written, `${name}: a default in backticks`).to.be.a('string');
          expect(value, `${name}: the table says ${row.def}`).to.equal(written);
        }
      }
      expect(c.webhookRetryDelaysMs).to.deep.equal(DEFAULT_WEBHOOK_RETRY_DELAYS_MS);
    });

    it('holds the ranges and forms the table writes', () => {
      const refused = (env: Record<string, string>) => expect(() => loadConfig(env), JSON.stringify(env)).to.throw(ConfigError);
      // MAX_WAIT_SECONDS (1–600)
      expect(rows.get('MAX_WAIT_SECONDS')!.meaning).to.include('(1–600)');
      expect(loadConfig({ MAX_WAIT_SECONDS: '1' }).maxWaitMs).to.equal(1000);
      expect(loadConfig({ MAX_WAIT_SECONDS: '600' }).maxWaitMs).to.equal(600_000);
      refused({ MAX_WAIT_SECONDS: '0' });
      refused({ MAX_WAIT_SECONDS: '601' });
      // WORKER_LOCK_MS (1000 to 2147483647), SHUTDOWN_FORCE_GRACE_MS (at most 2147483647): Node's longest timer
      expect(rows.get('WORKER_LOCK_MS')!.meaning).to.include('(1000 to 2147483647');
      expect(loadConfig({ WORKER_LOCK_MS: '1000' }).workerLockMs).to.equal(1000);
      expect(loadConfig({ WORKER_LOCK_MS: '2147483647' }).workerLockMs).to.equal(2_147_483_647);
      refused({ WORKER_LOCK_MS: '999' });
      refused({ WORKER_LOCK_MS: '2147483648' });
      expect(rows.get('SHUTDOWN_FORCE_GRACE_MS')!.meaning).to.include('at most 2147483647');
      refused({ SHUTDOWN_FORCE_GRACE_MS: '2147483648' });
      // WORKER_METRICS_PORT: `0` picks a free one
      expect(rows.get('WORKER_METRICS_PORT')!.meaning).to.include('`0` picks a free one');
      expect(loadConfig({ WORKER_METRICS_PORT: '0' }).workerMetricsPort).to.equal(0);
      // MODEL_POLL_SECONDS: `0`: never
      expect(rows.get('MODEL_POLL_SECONDS')!.meaning).to.include('`0`: never');
      expect(loadConfig({ MODEL_POLL_SECONDS: '0' }).modelPollMs).to.equal(0);
      // REDIS_URL: redis:// or rediss://
      expect(rows.get('REDIS_URL')!.meaning).to.include('(`redis://` or `rediss://`)');
      expect(loadConfig({ REDIS_URL: 'rediss://h:1' }).redisUrl).to.equal('rediss://h:1');
      refused({ REDIS_URL: 'http://h:1' });
      // LOG_LEVEL: the seven levels it lists
      const levels = [...rows.get('LOG_LEVEL')!.meaning.matchAll(/`([a-z]+)`/g)].map((m) => m[1]!);
      expect(levels).to.deep.equal(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);
      for (const level of levels) expect(loadConfig({ LOG_LEVEL: level }).logLevel).to.equal(level);
      refused({ LOG_LEVEL: 'verbose' });
      // NODE_ENV=production makes API_KEYS (or API_KEYS_FILE) mandatory; ADMIN_API_KEYS may not reuse a tenant's key.
      refused({ NODE_ENV: 'production' });
      expect(loadConfig({ NODE_ENV: 'production', API_KEYS: 'a:k' }).apiKeysAreDevDefault).to.equal(false);
      refused({ API_KEYS: 'a:same', ADMIN_API_KEYS: 'ops:same' });
      // "an empty (or blank) value counts as unset"
      expect(read('README.md')).to.include('an empty (or blank) value counts as unset');
      expect(loadConfig({ PORT: '', HOST: ' ' })).to.deep.include({ port: 8080, host: '0.0.0.0' });
      // docs/api.md's "Configuration" names only variables of the table.
      const apiConfig = section(read('docs', 'api.md'), '## Configuration');
      for (const m of apiConfig.matchAll(/`([A-Z][A-Z0-9_]+)`/g)) expect(rows.has(m[1]!), `docs/api.md names ${m[1]}`).to.equal(true);
    });
  });

  // -------------------------------------------------------------------------
  describe("docs/api.md's error table", () => {
    it('lists exactly the (code, status) pairs the gateway can answer, and every code of @infer/errors', () => {
      const api = read('docs', 'api.md');
      const table = section(api, 'The codes the gateway answers with:', '`inference_failed` is never an HTTP answer');
      const documented = new Set<string>();
      for (const m of table.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \|/gm)) documented.add(`${m[1]} ${m[2]}`);

      // Read off the source: every AppError the gateway and the packages make, through the constructor or the helpers.
      const emitted = new Set<string>(['internal_error 500']);
      for (const file of sourceFiles('apps/gateway/src', 'packages').filter((f) => !f.includes(`${path.sep}openapi`))) {
        const text = readFileSync(file, 'utf8').replace(/export const \w+ = /g, '');
        for (const m of text.matchAll(/new AppError\(\s*(\d{3}),\s*'([a-z_]+)'/g)) emitted.add(`${m[2]} ${m[1]}`);
        for (const m of text.matchAll(/\bbadRequest\(\s*'([a-z_]+)'/g)) emitted.add(`${m[1]} 400`);
        for (const m of text.matchAll(/\bnotFound\(\s*'([a-z_]+)'/g)) emitted.add(`${m[1]} 404`);
        if (/\binvalidInput\(/.test(text)) emitted.add('invalid_input 422');
        if (/'webhook_url_not_allowed'/.test(text)) emitted.add('webhook_url_not_allowed 422');
        if (/\binvalidRouting\(/.test(text)) emitted.add('invalid_routing 422');
        if (/\bconflict\(/.test(text)) emitted.add('conflict 409');
        if (/\bunauthorized\(/.test(text)) emitted.add('unauthorized 401');
        if (/\bforbidden\(/.test(text)) emitted.add('forbidden 403');
        if (/\bunavailable\(/.test(text)) emitted.add('unavailable 503');
      }
      expect([...documented].sort()).to.deep.equal([...emitted].sort());

      // Every code of the union is in the table, or is the one the page says is never an HTTP answer.
      const codes: readonly ErrorCode[] = ERROR_CODES;
      const inTable = new Set([...documented].map((p) => p.split(' ')[0]));
      expect(codes.filter((c) => !inTable.has(c))).to.deep.equal(['inference_failed']);
      expect(emitted.has('inference_failed 500') || [...emitted].some((p) => p.startsWith('inference_failed'))).to.equal(false);

      // The problem's `type` and `title`, as the field table says.
      expect(api).to.include('`https://infer.dev/problems/` then the code with `-` for `_`');
    });
  });

  // -------------------------------------------------------------------------
  describe("docs/operations.md's metrics", () => {
    type Described = { name: string; type: string; labels: string[] };
    /** A metric table: name, type and label names (the backticked words before any parenthesis). */
    function metricTable(text: string): Described[] {
      const out: Described[] = [];
      for (const m of text.matchAll(/^\| `(infer_[a-z_]+)` \| (counter|gauge|histogram) \|\s*([^|]*?)\s*\|/gm)) {
        const labels = [...m[3]!.replace(/\([^)]*\)/g, '').matchAll(/`([a-z_]+)/g)].map((l) => l[1]!);
        out.push({ name: m[1]!, type: m[2]!, labels });
      }
      return out;
    }
    /** The metrics a registry holds, with their types and label names, as registered. */
    function registered(metrics: unknown[]): Described[] {
      return metrics.map((raw) => {
        const m = raw as { name: string; type?: string; labelNames?: readonly string[]; constructor: { name: string } };
        return { name: m.name, type: m.type ?? m.constructor.name.toLowerCase(), labels: [...(m.labelNames ?? [])] };
      });
    }
    const byName = (list: Described[]) => [...list].sort((a, b) => a.name.localeCompare(b.name));

    let p: TestPlatform;
    before(async () => {
      p = await startPlatform();
    });
    after(async () => {
      await p?.close();
    });

    it('describes every metric each process registers, with its type and labels, and nothing else', async () => {
      const ops = read('docs', 'operations.md');
      const gatewayDoc = metricTable(section(ops, '### Gateway', '### Worker'));
      const workerDoc = metricTable(section(ops, '### Worker', 'Useful expressions'));

      const gw = new GatewayMetrics();
      const stub = {} as never;
      new QueueMetrics({ redis: stub as Redis, prefix: 'unused', versions: () => [], bulkQueues: stub as BulkQueues, fleet: stub as FleetView, registry: gw.registry });
      // A gateway counts only its clients' cancels: one label value, as the table writes `status="canceled"`.
      expect(byName(gatewayDoc)).to.deep.equal(byName(registered(gw.registry.getMetricsAsArray())));
      expect(byName(workerDoc)).to.deep.equal(byName(registered(new WorkerMetrics().registry.getMetricsAsArray())));

      // And what the processes serve is that, plus Node's process metrics (the ones the page names among them).
      const served = async (url: string) => new Set([...(await (await fetch(url)).text()).matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => `${m[1]} ${m[2]}`));
      const defaults = new Set(registered(processRegistry().getMetricsAsArray()).map((m) => m.name));
      for (const named of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_heap_size_used_bytes']) {
        expect(ops, named).to.include(`\`${named}\``);
        expect(defaults.has(named), named).to.equal(true);
      }
      const gatewayServed = await served(`${p.baseUrl}/metrics`);
      const workerServed = await served(`http://127.0.0.1:${p.worker!.metricsPort}/metrics`);
      const own = (s: Set<string>) => [...s].filter((line) => line.startsWith('infer_')).sort();
      expect(own(gatewayServed)).to.deep.equal(gatewayDoc.map((m) => `${m.name} ${m.type}`).sort());
      expect(own(workerServed)).to.deep.equal(workerDoc.map((m) => `${m.name} ${m.type}`).sort());
      for (const s of [gatewayServed, workerServed]) for (const line of s) if (!line.startsWith('infer_')) expect(defaults.has(line.split(' ')[0]!), line).to.equal(true);
    });

    it('names the same metrics, processes and labels in docs/rollouts.md and docs/api.md', () => {
      const ops = read('docs', 'operations.md');
      const where = new Map<string, { process: string; labels: string[] }>();
      for (const [process, from, to] of [['gateway', '### Gateway', '### Worker'], ['worker', '### Worker', 'Useful expressions']] as const) {
        for (const m of metricTable(section(ops, from, to))) where.set(m.name, { process, labels: m.labels });
      }
      const rollouts = section(read('docs', 'rollouts.md'), '| metric | process | what to compare |', '```promql');
      let rows = 0;
      for (const m of rollouts.matchAll(/^\| `(infer_[a-z_]+)\{([a-z_,]+)\}` \| (gateway|worker) \|/gm)) {
        rows++;
        const doc = where.get(m[1]!);
        expect(doc, m[1]).to.not.equal(undefined);
        expect(m[3], `${m[1]}: process`).to.equal(doc!.process);
        expect(m[2]!.split(','), `${m[1]}: labels`).to.deep.equal(doc!.labels);
      }
      expect(rows).to.equal(6);
      const apiMetrics = section(read('docs', 'api.md'), '### `GET /metrics`', '### `GET /openapi.json`');
      expect(where.get('infer_http_request_duration_seconds')!.labels).to.deep.equal(['method', 'route', 'status']);
      expect(apiMetrics).to.match(/`infer_http_request_duration_seconds` \(histogram by\s+`method`, full `route` pattern and `status`\)/);
      expect(where.get('infer_jobs_submitted_total')!.labels).to.deep.equal(['model', 'version']);
      expect(apiMetrics).to.match(/`infer_jobs_submitted_total` \(by\s+`model` and `version`/);
      // Every metric a promql example of the docs asks for is one of these.
      for (const file of [['docs', 'operations.md'], ['docs', 'rollouts.md']]) {
        for (const block of codeBlocks(read(...file), /^promql$/)) {
          for (const m of block.code.matchAll(/\b(infer_[a-z_]+?)(?:_bucket)?\b(?=[{[)\s])/g)) expect(where.has(m[1]!), `${file.join('/')}: ${m[1]}`).to.equal(true);
        }
      }
    });
  });

  // -------------------------------------------------------------------------
  describe('TypeScript in the docs', () => {
    it('type-checks every ```ts snippet of README.md and docs/ against the real packages', function () {
      this.timeout(180_000);
      /** Names snippets use without declaring, as a reader would have them from the snippets above. */
      const PRELUDE: Record<string, string> = {
        client: 'declare const client: import("@infer/sdk").InferClient;',
        features: 'declare const features: number[];',
        orderId: 'declare const orderId: string;',
        secret: 'declare const secret: string;',
        batch: 'declare const batch: import("@infer/sdk").Batch;',
        job: 'declare const job: import("@infer/sdk").Job;',
        deliveries: 'declare const deliveries: import("@infer/sdk").WebhookDelivery[];',
        rawBody: 'declare const rawBody: string;',
        headers: 'declare const headers: Record<string, string>;',
        connection: 'declare const connection: import("ioredis").Redis;',
        prefix: 'declare const prefix: string;',
        resultTtlMs: 'declare const resultTtlMs: number;',
        config: 'declare const config: import("@infer/config").Config;',
        logger: 'declare const logger: import("@infer/logger").Logger;',
        tenant: 'declare const tenant: string;',
        url: 'declare const url: string;',
      };
      const IMPORTS: Record<string, string> = { InferClient: '@infer/sdk', WebhookEvents: '@infer/webhooks' };
      const files = new Map<string, string>();
      for (const doc of ['README.md', 'docs/sdk.md', 'docs/cli.md', 'docs/rollouts.md', 'docs/webhooks.md']) {
        for (const block of codeBlocks(read(doc), /^ts$/)) {
          const lines = block.code.split('\n');
          const imports = lines.filter((l) => l.startsWith('import '));
          const body = lines.filter((l) => !l.startsWith('import '));
          const declared = new Set([...block.code.matchAll(/(?:const|let|function\*?|async function\*?)\s+(\w+)|\{\s*(\w+)\s*\}\s*=/g)].map((m) => m[1] ?? m[2]));
          const imported = new Set(imports.flatMap((i) => [...i.matchAll(/\b(\w+)\b/g)].map((m) => m[1]!)));
          const prelude = Object.entries(PRELUDE)
            .filter(([name]) => !declared.has(name) && !imported.has(name) && new RegExp(`\\b${name}\\b`).test(block.code))
            .map(([, decl]) => decl);
          const extra = Object.entries(IMPORTS)
            .filter(([name]) => !imported.has(name) && new RegExp(`\\b${name}\\b`).test(block.code))
            .map(([name, from]) => `import { ${name} } from '${from}';`);
          files.set(path.join(REPO_ROOT, 'test', `__doc_snippet_${doc.replace(/\W/g, '_')}_${block.line}.ts`), [...imports, ...extra, ...prelude, 'export {};', ...body].join('\n'));
        }
      }
      expect(files.size).to.be.at.least(20);
      const options: ts.CompilerOptions = {
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.NodeNext,
        moduleResolution: ts.ModuleResolutionKind.NodeNext,
        lib: ['lib.es2023.d.ts'],
        types: ['node'],
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        allowImportingTsExtensions: true,
      };
      // The snippets exist only in memory; everything else is read from disk.
      const host = ts.createCompilerHost(options);
      const getSourceFile = host.getSourceFile.bind(host);
      const fileExists = host.fileExists.bind(host);
      const readFile = host.readFile.bind(host);
      host.getSourceFile = (name, language, ...rest) => (files.has(name) ? ts.createSourceFile(name, files.get(name)!, language) : getSourceFile(name, language, ...rest));
      host.fileExists = (name) => files.has(name) || fileExists(name);
      host.readFile = (name) => files.get(name) ?? readFile(name);
      const program = ts.createProgram([...files.keys()], options, host);
      const problems = ts
        .getPreEmitDiagnostics(program)
        .filter((d) => d.file && files.has(d.file.fileName))
        .map((d) => {
          const { line } = d.file!.getLineAndCharacterOfPosition(d.start ?? 0);
          return `${path.basename(d.file!.fileName)}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')} | ${d.file!.text.split('\n')[line]}`;
        });
      expect(problems).to.deep.equal([]);
    });
  });

  // -------------------------------------------------------------------------
  describe('docs/sdk.md and the SDK', () => {
    it("gives the client options the defaults the SDK uses, and every route's call exists", async () => {
      const sdk = read('docs', 'sdk.md');
      const options = section(sdk, '| option | default | |', '\n\n');
      const client = read('packages', 'sdk', 'src', 'client.ts');
      for (const m of options.matchAll(/^\| `(\w+)` \| `?(\d+)`? \|/gm)) {
        const code = new RegExp(`${m[1]}: options\\.${m[1]} \\?\\? ([\\d_]+)`).exec(client);
        expect(code, `client.ts default of ${m[1]}`).to.not.equal(null);
        expect(Number(code![1]!.replaceAll('_', '')), m[1]).to.equal(Number(m[2]));
      }
      expect(options).to.include('`timeoutMs` | `30000`').and.include('`maxRetries` | `3`').and.include('`maxRetryDelayMs` | `30000`');

      const table = section(sdk, '| route | call |', 'Not in the SDK');
      const documented = new Set<string>();
      const instance = new InferClient({ baseUrl: 'http://127.0.0.1:9', apiKey: 'k' }) as unknown as Record<string, Record<string, unknown>>;
      for (const m of table.matchAll(/^\| `(GET|POST|PUT) ([^`]+)` \| (.+) \|$/gm)) {
        documented.add(`${m[1]} ${m[2]}`);
        for (const call of m[3]!.matchAll(/`(\w+)\.(\w+)\(/g)) expect(instance[call[1]!]?.[call[2]!], `${call[1]}.${call[2]}`).to.be.a('function');
      }
      const v1 = Object.entries(buildOpenApi().paths).flatMap(([p, item]) =>
        Object.keys(item as object)
          .filter((k) => ['get', 'post', 'put'].includes(k))
          .map((k) => `${k.toUpperCase()} ${p}`),
      );
      expect([...documented].sort()).to.deep.equal(v1.filter((r) => r.includes(' /v1/')).sort());
      // "Besides the client, the package exports …"
      const exportsPara = section(sdk, 'Besides the client, the package exports');
      const sdkModule = (await import('@infer/sdk')) as Record<string, unknown>;
      for (const name of ['tensorB64', 'isJobEnded', 'isBatchEnded', 'isRolloutEnded', 'isWebhookDeliveryEnded', 'parseNdjson', 'MAX_WAIT_SECONDS']) {
        expect(exportsPara, name).to.include(`\`${name}\``);
        expect(sdkModule[name], name).to.not.equal(undefined);
      }
      expect(sdkModule.MAX_WAIT_SECONDS).to.equal(loadConfig({}).maxWaitMs / 1000);
    });
  });

  // -------------------------------------------------------------------------
  describe('docs/cli.md and the CLI', () => {
    const io = { stdout: new PassThrough(), stderr: new PassThrough(), stdin: new PassThrough() } as unknown as CliIo;
    const program = buildProgram(io, {});
    const commandOf = (words: string[]): Command | undefined => {
      let cmd: Command | undefined = program;
      for (const w of words) cmd = cmd?.commands.find((c) => c.name() === w);
      return cmd;
    };
    const longs = (cmd: Command) => (cmd.options as readonly Option[]).map((o) => o.long!);

    it('documents the global flags with their environment variables and defaults', () => {
      const cli = read('docs', 'cli.md');
      const main = read('apps', 'cli', 'src', 'main.ts');
      const defaults = program.opts();
      const rows = [...section(cli, '| flag | environment | default |', '\n\n').matchAll(/^\| `(--[a-z-]+) <\w+>` \| `(INFER_[A-Z_]+)` \| (.+) \|$/gm)];
      expect(rows.map((r) => r[1])).to.deep.equal(longs(program));
      const key = (flag: string) => flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
      for (const [, flag, env, def] of rows) {
        expect(main, `${env} feeds ${flag}`).to.match(new RegExp(`${key(flag!)}: process\\.env\\.${env}`));
        const written = /^`([^`]+)`/.exec(def!)?.[1];
        expect(defaults[key(flag!)], flag).to.equal(written);
      }
    });

    it('names every command, and the flags of each option table are the command’s', () => {
      const cli = read('docs', 'cli.md');
      const commands: string[] = [];
      for (const group of program.commands) for (const sub of group.commands) commands.push(`${group.name()} ${sub.name()}`);
      for (const c of commands) expect(cli, c).to.match(new RegExp(`infer ${c}\\b`));
      for (const m of cli.matchAll(/^infer (\w+) ([a-z-]+)/gm)) expect(commandOf([m[1]!, m[2]!]), m[0]).to.not.equal(undefined);

      /** An option table under a heading: each row's backticked flags belong to `words`. */
      const table = (heading: string, words: string[]) => {
        const cmd = commandOf(words)!;
        const rows = section(cli, heading, '\n\n#').split('\n').filter((l) => /^\| `-/.test(l));
        expect(rows.length, heading).to.be.greaterThan(3);
        for (const row of rows) {
          const flags = /^\| `([^`]+)`/.exec(row)![1]!;
          const option = (cmd.options as readonly Option[]).find((o) => o.flags === flags);
          expect(option, `${words.join(' ')}: ${flags}`).to.not.equal(undefined);
          if (/\| required \|$/.test(row)) expect(option!.mandatory, `${flags} required`).to.equal(true);
          const def = /\(default (\d+)\)/.exec(row)?.[1];
          if (def) expect(option!.defaultValue, `${flags} default`).to.equal(Number(def));
        }
        expect(longs(cmd).filter((l) => !rows.some((r) => r.includes(l))), `${words.join(' ')}: flags the table leaves out`).to.deep.equal([]);
      };
      table('### `jobs submit`', ['jobs', 'submit']);
      table('### `batch submit`', ['batch', 'submit']);

      // The lifecycle table: each command's documented long flags are its own, and it has no other.
      const lifecycle = section(cli, '| command | options |', '\n\n');
      for (const m of lifecycle.matchAll(/^\| (.+?) \| (.*) \|$/gm)) {
        const names = [...m[1]!.matchAll(/`models ([a-z-]+) /g)].map((n) => n[1]!);
        if (names.length === 0) continue;
        const documented = [...m[2]!.matchAll(/`(--[a-z0-9-]+)/g)].map((f) => f[1]!).sort();
        for (const name of names) expect(longs(commandOf(['models', name])!).sort(), `models ${name}`).to.deep.equal(documented);
      }
      // Every flag of every command appears somewhere in docs/cli.md.
      for (const group of program.commands) {
        for (const sub of group.commands) for (const long of longs(sub)) expect(cli, `${group.name()} ${sub.name()} ${long}`).to.include(long);
      }
    });
  });

  // -------------------------------------------------------------------------
  describe("README's curl examples", () => {
    let p: TestPlatform;
    before(async () => {
      // As `npm start` runs them: the development key, the shipped models (the tests' copy, never ./models).
      p = await startPlatform({ models: SHIPPED_MODELS, env: { API_KEYS: 'dev:dev-key' } });
    });
    after(async () => {
      await p?.close();
    });

    /** Run a bash script; resolves with its exit code and output. */
    const bash = (script: string) => collected(spawn('bash', ['-c', script], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] }));

    /** The JSON `"key":value` pairs of an abbreviated example that hold no `…` (strings, numbers, flat objects and arrays). */
    function examplePairs(example: string): Array<[string, unknown]> {
      const out: Array<[string, unknown]> = [];
      const value = String.raw`"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|\[[^\][…]*\]|\{(?:[^{}…"]|"(?:[^"\\]|\\.)*")*\}`;
      for (const m of example.matchAll(new RegExp(String.raw`"(\w+)":(${value})(?=[,}])`, 'g'))) {
        if (m[2]!.includes('…')) continue;
        out.push([m[1]!, JSON.parse(m[2]!)]);
      }
      return out;
    }

    /** `expected` written with fewer decimals, as the README rounds: equal to `actual` at that precision. */
    function matches(expected: unknown, actual: unknown): boolean {
      if (typeof expected === 'number' && typeof actual === 'number') {
        const decimals = (String(expected).split('.')[1] ?? '').length;
        return Math.abs(expected - actual) <= 0.5 * 10 ** -decimals + 1e-12;
      }
      if (Array.isArray(expected)) return Array.isArray(actual) && actual.length === expected.length && expected.every((e, i) => matches(e, actual[i]));
      if (expected && typeof expected === 'object') {
        return !!actual && typeof actual === 'object' && Object.entries(expected).every(([k, v]) => matches(v, (actual as Record<string, unknown>)[k]));
      }
      return expected === actual;
    }

    it('answer as "Try it with curl" writes them', async function () {
      this.timeout(60_000);
      const readme = read('README.md');
      const blocks = codeBlocks(section(readme, '## Try it with curl', '### Operations'), /^sh$/);
      expect(blocks.length).to.be.at.least(6);
      const host = p.baseUrl.replace('http://', '');
      // Commands (continuation lines joined), each followed by the answer lines the README writes under it.
      const steps: Array<{ command: string; expected: string[] }> = [];
      for (const block of blocks) {
        // One command a line: continuation lines (`\`, a trailing `|`, an open single quote) joined.
        const lines: string[] = [];
        let pending = '';
        for (const raw of block.code.split('\n')) {
          if (!pending && raw.trimStart().startsWith('#')) {
            lines.push(raw);
            continue;
          }
          pending = pending ? `${pending} ${raw.trim()}` : raw;
          const open = (pending.match(/'/g) ?? []).length % 2 === 1;
          if (open || /(\\|\|)\s*$/.test(pending)) {
            pending = pending.replace(/\\\s*$/, '');
            continue;
          }
          lines.push(pending);
          pending = '';
        }
        for (const line of lines) {
          const answer = /^\s*#\s?(.*)$/.exec(line);
          if (answer) {
            // An answer line: a status line, a header, or JSON (not a remark such as "# or: …").
            if (/^(HTTP\/|[A-Z][\w-]+: |\{|\s*")/.test(answer[1]!) && steps.length) steps.at(-1)!.expected.push(answer[1]!);
          } else if (line.trim()) {
            steps.push({ command: line.replaceAll('localhost:8080', host), expected: [] });
          }
        }
      }
      // A poll (GET /v1/jobs/{id} without Prefer) is repeated, bounded, until the job has ended, as a reader polls.
      const script = [
        'set -u',
        `poll_until_ended() { local out; for _ in $(seq 1 200); do out=$(command curl "$@"); case "$out" in *'"status":"queued"'*|*'"status":"running"'*) sleep 0.02;; *) break;; esac; done; printf '%s' "$out"; }`,
        ...steps.map((s, i) => {
          const poll = /^curl -s \S+\/v1\/jobs\/\$JOB -H '[^']+'$/.test(s.command);
          return `echo; echo "@@STEP ${i}"; ${poll ? s.command.replace(/^curl/, 'poll_until_ended') : s.command}`;
        }),
      ].join('\n');
      const run = await bash(script);
      expect(run.code, run.stderr).to.equal(0);
      const outputs = new Map<number, string>();
      for (const part of run.stdout.split(/\n@@STEP /).slice(1)) {
        const nl = part.indexOf('\n');
        outputs.set(Number(part.slice(0, nl)), part.slice(nl + 1).replace(/\r/g, ''));
      }

      let checked = 0;
      for (const [i, step] of steps.entries()) {
        if (step.expected.length === 0) continue;
        const out = outputs.get(i) ?? '';
        const [head, body] = out.includes('\n\n') && /^HTTP\//.test(out) ? [out.slice(0, out.indexOf('\n\n')), out.slice(out.indexOf('\n\n') + 2)] : ['', out];
        const json: unknown = JSON.parse(body.trim());
        const exampleJson = step.expected.filter((l) => /^(\{|\s*")/.test(l)).join('');
        for (const line of step.expected) {
          const status = /^HTTP\/1\.1 (\d{3}) (.+)$/.exec(line);
          const header = /^([A-Z][\w-]+): (.+)$/.exec(line);
          if (status) {
            expect(head.split('\n')[0], step.command).to.equal(`HTTP/1.1 ${status[1]} ${status[2]}`);
            checked++;
          } else if (header) {
            const got = new RegExp(`^${header[1]}: (.*)$`, 'im').exec(head)?.[1];
            // A job's id differs each run: its path prefix and the 30 characters do not.
            const want = header[2]!.replace(/\/v1\/jobs\/[\w-]{30}$/, '/v1/jobs/');
            expect(got, `${step.command}: ${header[1]}`).to.be.a('string');
            if (want.endsWith('/v1/jobs/')) expect(got).to.match(/^\/v1\/jobs\/[\w-]{30}$/);
            else expect(got).to.equal(want);
            checked++;
          }
        }
        if (exampleJson) {
          let whole: unknown;
          try {
            whole = JSON.parse(exampleJson);
          } catch {
            whole = undefined;
          }
          const pairs: Array<[string, unknown]> = whole !== undefined ? Object.entries(whole as object) : examplePairs(exampleJson);
          expect(pairs.length, exampleJson).to.be.greaterThan(0);
          for (const [key, want] of pairs) {
            const got = (json as Record<string, unknown>)[key];
            if (key === 'id' && typeof want === 'string' && /^[\w-]{30}$/.test(want)) {
              // The example id is a real one of the same queue: the same 8-character tag (mlp's default version).
              expect(String(got).slice(0, 8), `${step.command}: id tag`).to.equal(want.slice(0, 8));
            } else if (key === 'metrics') {
              // Times vary; the fields and the batch size do not.
              expect(Object.keys(got as object).sort(), `${step.command}: metrics`).to.deep.equal(Object.keys(want as object).sort());
              expect((got as { batch_size: number }).batch_size).to.equal((want as { batch_size: number }).batch_size);
            } else {
              expect(matches(want, got), `${step.command}: "${key}" is ${JSON.stringify(got)}, the README writes ${JSON.stringify(want)}`).to.equal(true);
            }
            checked++;
          }
        }
      }
      expect(checked).to.be.at.least(20);
    });
  });
});
