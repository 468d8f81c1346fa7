import zlib from 'node:zlib';

/**
 * Hostile requests for test/fuzz.test.ts, drawn from a seeded PRNG: the
 * same seed gives the same requests, byte for byte, in the same order.
 */

/** mulberry32: a small, fast 32-bit PRNG; plenty for picking test cases. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** In [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

/** A request made with fetch. `body` is sent as is; `key: null` sends no Authorization. */
export interface FetchCase {
  kind: 'fetch';
  label: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer | string;
  /** Authorization header value; undefined: the test tenant's key. */
  authorization?: string | null;
  /**
   * The gateway may answer before reading the whole body (413, 415, 429):
   * the client may then see its connection closed while still sending.
   */
  mayCloseEarly?: boolean;
  /** Answers Node's HTTP layer gives itself (no problem+json): 431 for a URL or headers over 16 KiB. */
  nodeLevel?: boolean;
}

/** Raw bytes on a socket, for what fetch refuses to send (invalid bytes in a method, a header, a path). */
export interface RawCase {
  kind: 'raw';
  label: string;
  bytes: Buffer;
}

export type FuzzCase = FetchCase | RawCase;

const MLP_FEATURES = 64;
/** A valid MLP input, deterministic. */
const features = (rng: Rng): number[] => Array.from({ length: MLP_FEATURES }, () => Math.round((rng.next() * 2 - 1) * 1e4) / 1e4);

/** Nested `depth` levels: arrays or objects, as JSON text (built as text: no recursion anywhere). */
export function deepJson(depth: number, kind: 'array' | 'object' | 'mixed', rng?: Rng): string {
  let open = '';
  let close = '';
  for (let i = 0; i < depth; i++) {
    const arr = kind === 'array' || (kind === 'mixed' && rng!.chance(0.5));
    open += arr ? '[' : '{"a":';
    close = (arr ? ']' : '}') + close;
  }
  return open + '1' + close;
}

const UNICODE_BITS = ['\u0000', '\u0001', '\u001f', '\u007f', '\u00ff', '\u2028', '\u2029', '\ufeff', '\ud83d\ude00', '\ud800', '\udfff', 'é', '中文', '../', '%00', '%zz', '\\', '"', "'", '<script>', '${x}', '\r\n'];

function hostileString(rng: Rng): string {
  const n = rng.pick([0, 1, 3, 10, 129, 513, 5000]);
  let s = '';
  while (s.length < n) s += rng.chance(0.5) ? rng.pick(UNICODE_BITS) : String.fromCharCode(0x20 + rng.int(95));
  return s;
}

/** A JSON value (as text) of a type a field does not take, or an edge of the type it does. */
function hostileValue(rng: Rng): string {
  switch (rng.int(18)) {
    case 0:
      return 'null';
    case 1:
      return rng.pick(['true', 'false']);
    case 2:
      return rng.pick(['0', '-1', '1.5', '-0', '1e309', '-1e309', '1e-400', '9007199254740993', '123456789012345678901234567890', '4e38', '1E+2']);
    case 3:
      return JSON.stringify(hostileString(rng));
    case 4:
      return '[]';
    case 5:
      return '{}';
    case 6:
      return deepJson(rng.pick([20, 40, 200, 10_000]), 'mixed', rng);
    case 7:
      return `[${Array.from({ length: rng.int(5) }, () => hostileValue(rng)).join(',')}]`;
    case 8:
      return `{${Array.from({ length: rng.int(4) }, () => `${JSON.stringify(hostileString(rng))}:${hostileValue(rng)}`).join(',')}}`;
    case 9:
      return JSON.stringify('x'.repeat(rng.pick([4097, 70_000, 1_000_000])));
    case 10:
      return `{"datatype":${rng.pick(['"FP32"', '"FP64"', '"BYTES"', '"INT64"', '"fp32"', '1', 'null'])},"shape":${rng.pick(['[64]', '[1e9]', '[0,1e15]', '[-1]', '[64.5]', '[]', '"64"', '[3,1000000000,1000000000]', `[${'1,'.repeat(20)}1]`, '[9007199254740991,9007199254740991]'])},"data":${rng.pick(['[]', '[1,2]', '"abc"', 'null', `[${'0,'.repeat(63)}0]`])}}`;
    case 11:
      return `{"datatype":"FP32","shape":${rng.pick(['[64]', '[1e9]', '[0,1e15]', '[3,0,1e15]'])},"b64":${rng.pick(['"AAAA"', '"A==="', '"!!!!"', '12', '""', JSON.stringify(Buffer.alloc(256).toString('base64')), JSON.stringify(Buffer.alloc(2048, 0xff).toString('base64'))])}}`;
    case 12:
      return rng.pick(['NaN', 'Infinity', '-Infinity', 'undefined', '0x10', '.5', '01', '+1', '1.', '"\\u"', '"\\ud800"', "'x'"]);
    case 13:
      return `[${Array.from({ length: MLP_FEATURES }, (_, i) => (i === rng.int(MLP_FEATURES) ? rng.pick(['1e309', 'null', '"0.5"', '{}', '[]', 'true', '4e38', deepJson(10_000, 'array')]) : '0.5')).join(',')}]`;
    case 14:
      return `[${Array.from({ length: rng.pick([0, 1, 63, 65, 640]) }, () => '0.25').join(',')}]`;
    case 15:
      return deepJson(rng.pick([17, 100]), 'array');
    case 16:
      return `{"__proto__":{"x":1},"constructor":${hostileValue(rng)}}`;
    default:
      return JSON.stringify(rng.pick(['mlp', 'ocr-cls', 'nope', '', 'mlp\u0000', 'ml\u0000p', 'm'.repeat(129), '../mlp', 'mlp/../../etc']));
  }
}

/** A POST /v1/jobs body as text: mostly valid, with one field replaced, dropped or added. */
function jobBody(rng: Rng): string {
  const fields: Record<string, string> = {
    model: '"mlp"',
    input: `{"features":${JSON.stringify(features(rng))}}`,
  };
  if (rng.chance(0.3)) fields.version = rng.pick(['"2"', '1', '"1"']);
  if (rng.chance(0.2)) fields.metadata = '{"k":"v"}';
  const all = ['model', 'version', 'input', 'webhook', 'webhook_events_filter', 'metadata', 'extra', 'input.features', 'input.extra'];
  const edits = rng.int(3);
  for (let e = 0; e < edits; e++) {
    const field = rng.pick(all);
    if (field === 'input.features') fields.input = `{"features":${hostileValue(rng)}}`;
    else if (field === 'input.extra') fields.input = `{"features":${JSON.stringify(features(rng))},${JSON.stringify(hostileString(rng))}:${hostileValue(rng)}}`;
    else if (rng.chance(0.15)) delete fields[field];
    else fields[field] = hostileValue(rng);
  }
  return `{${Object.entries(fields)
    .map(([k, v]) => `${JSON.stringify(k)}:${v}`)
    .join(',')}}`;
}

/** One batch item as JSON text. */
function itemJson(rng: Rng): string {
  if (rng.chance(0.4)) return `{"custom_id":${JSON.stringify(`c${rng.int(1000)}`)},"input":{"features":${JSON.stringify(features(rng))}}}`;
  switch (rng.int(6)) {
    case 0:
      return hostileValue(rng);
    case 1:
      return `{"custom_id":${hostileValue(rng)},"input":{"features":${JSON.stringify(features(rng))}}}`;
    case 2:
      return `{"input":{"features":${hostileValue(rng)}}}`;
    case 3:
      return `{"input":${hostileValue(rng)},"extra":1}`;
    case 4:
      return `{"custom_id":${JSON.stringify('x'.repeat(rng.pick([512, 513, 20_000])))},"input":{"features":${JSON.stringify(features(rng))}}}`;
    default:
      return deepJson(10_000, 'mixed', rng);
  }
}

function batchJsonBody(rng: Rng): string {
  const fields: Record<string, string> = {
    model: '"mlp"',
    items: `[${Array.from({ length: 1 + rng.int(5) }, () => itemJson(rng)).join(',')}]`,
  };
  const all = ['model', 'version', 'items', 'webhook', 'webhook_events_filter', 'metadata', 'extra'];
  const edits = rng.int(3);
  for (let e = 0; e < edits; e++) {
    const field = rng.pick(all);
    if (rng.chance(0.15)) delete fields[field];
    else fields[field] = hostileValue(rng);
  }
  return `{${Object.entries(fields)
    .map(([k, v]) => `${JSON.stringify(k)}:${v}`)
    .join(',')}}`;
}

function ndjsonBody(rng: Rng): Buffer {
  const lines: Array<string | Buffer> = [];
  const n = 1 + rng.int(8);
  for (let i = 0; i < n; i++) {
    const r = rng.int(10);
    if (r === 0) lines.push(rng.bytes(rng.int(200)).toString('latin1').replaceAll('\n', ' '));
    else if (r === 1) lines.push(rng.pick(['', '   ', '\r', '\t']));
    else if (r === 2) lines.push(itemJson(rng).slice(0, rng.int(60)));
    else lines.push(itemJson(rng));
  }
  const text = lines.join(rng.chance(0.2) ? '\r\n' : '\n') + (rng.chance(0.7) ? '\n' : '');
  return Buffer.concat([rng.chance(0.05) ? Buffer.from([0xef, 0xbb, 0xbf]) : Buffer.alloc(0), Buffer.from(text, 'latin1')]);
}

const NDJSON_TYPES = ['application/x-ndjson', 'application/ndjson', 'application/jsonl', 'application/x-jsonlines; charset=utf-8'];

function ndjsonQuery(rng: Rng): string {
  const parts = ['model=mlp'];
  switch (rng.int(10)) {
    case 0:
      parts[0] = `model=${rng.pick(['%zz', '%00', 'nope', '', '%E2%80%A8', 'mlp%00', 'x'.repeat(200)])}`;
      break;
    case 1:
      parts.push(`version=${rng.pick(['1', '2', '3', '0', '-1', '1e3', '%zz', 'x', '01'])}`);
      break;
    case 2:
      parts.push(`webhook=${rng.pick(['http%3A%2F%2F127.0.0.1%2F', 'ftp://x', '%zz', 'https://example.com/h'])}`);
      break;
    case 3:
      parts.push(rng.pick(['metadata=1', 'model=ocr-cls', 'items=1', 'limit=5', '%zz=1', 'a[b]=1', '=', '&&&']));
      break;
    case 4:
      parts.length = 0;
      break;
    default:
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

const CODINGS = ['gzip', 'x-gzip', 'deflate', 'br', 'identity', 'IDENTITY', 'GZip', 'zstd', 'compress', 'gzip, gzip', 'identity, gzip', 'br;q=1', '*', 'chunked', ' ', 'g\u00fczip'];

/** A body encoded (or not) for `coding`: valid, garbage, truncated, or a small bomb that inflates past 10 MiB. */
function encodedBody(rng: Rng, plain: Buffer, coding: string): Buffer {
  const c = coding.trim().toLowerCase();
  const compress = (b: Buffer): Buffer =>
    c === 'gzip' || c === 'x-gzip' ? zlib.gzipSync(b) : c === 'deflate' ? zlib.deflateSync(b) : c === 'br' ? zlib.brotliCompressSync(b) : b;
  switch (rng.int(5)) {
    case 0:
      return rng.bytes(rng.int(300));
    case 1: {
      const whole = compress(plain);
      return whole.subarray(0, rng.int(whole.length));
    }
    case 2:
      return compress(Buffer.alloc(11 * 1024 * 1024, 0x20));
    default:
      return compress(plain);
  }
}

/** Percent-garbage, traversal and odd bytes for a path segment (all of it encodable in a URL fetch sends). */
const BAD_IDS = [
  '%zz',
  '%',
  '%%',
  '%0',
  '%00',
  '%ff',
  '%c0%af',
  '%ED%A0%80',
  '..%2f..%2fetc',
  '..%2F..%2F..%2Fetc%2Fpasswd',
  '%2e%2e',
  '..',
  '.',
  '%2f',
  'a%00b',
  '%E2%80%A8',
  'x'.repeat(300),
  'x'.repeat(5000),
  '00000000-0000-4000-8000-000000000000',
  'msg_00000000000000000000000000000000',
  '%F0%9F%98%80',
  '%u0041',
  '+',
  '%20',
  'a;b',
  'a,b',
];

const ROUTES: ReadonlyArray<(id: string) => [method: string, path: string]> = [
  (id: string) => ['GET', `/v1/jobs/${id}`],
  (id: string) => ['POST', `/v1/jobs/${id}/cancel`],
  (id: string) => ['GET', `/v1/jobs/${id}/webhook_deliveries`],
  (id: string) => ['GET', `/v1/batches/${id}`],
  (id: string) => ['GET', `/v1/batches/${id}/results`],
  (id: string) => ['POST', `/v1/batches/${id}/cancel`],
  (id: string) => ['GET', `/v1/batches/${id}/webhook_deliveries`],
  (id: string) => ['GET', `/v1/models/${id}`],
  (id: string) => ['GET', `/v1/webhook_deliveries/${id}`],
  (id: string) => ['POST', `/v1/webhook_deliveries/${id}/resend`],
  (id: string) => ['GET', `/${id}`],
  (id: string) => ['DELETE', `/v1/jobs/${id}`],
  (id: string) => ['GET', `/v1/batches?after=${id}`],
  (id: string) => ['GET', `/v1/batches?limit=${id}`],
];

/** Header values fetch can send: visible ASCII and latin-1, no NUL, CR or LF. */
function headerValue(rng: Rng): string {
  const n = rng.pick([0, 1, 8, 300, 8000]);
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(rng.chance(0.8) ? 0x20 + rng.int(95) : 0x80 + rng.int(128));
  return s.trim();
}

const PREFERS = ['wait', 'wait=0', 'wait=1', 'wait=-1', 'wait=abc', 'wait=1e99', 'wait=99999999999999999999', 'wait=0.0001', 'wait="2"', 'wait;x=1', 'respond-async, wait=1', 'wait=1, wait=100', 'return=minimal', 'wait=\u00ff', ''];
const IDEMPOTENCY_KEYS = ['', ' ', 'k', 'a b', 'k'.repeat(255), 'k'.repeat(256), '\u00e9t\u00e9', 'fuzz-replay-1', 'fuzz-replay-2', '!"#$%&()*+,-./:;<=>?@[]^_`{|}~'];

function withKeyVariant(rng: Rng, c: FetchCase): FetchCase {
  if (!rng.chance(0.06)) return c;
  const authorization = rng.pick([null, '', 'Bearer', 'Bearer ', 'bearer test-key-a', 'Basic dGVzdDp0ZXN0', 'Bearer wrong', `Bearer ${'k'.repeat(8000)}`, 'Bearer test-key-a extra', 'Bearer \u00ff\u00fe']);
  return { ...c, authorization, label: `${c.label} +auth(${authorization === null ? 'none' : authorization.slice(0, 20)})` };
}

/** One hostile request. `i` only labels it. */
export function fuzzCase(rng: Rng, i: number): FuzzCase {
  const r = rng.int(100);
  let c: FuzzCase;
  if (r < 6) {
    // Random bytes as a body, with any content type.
    const path = rng.pick(['/v1/jobs', '/v1/batches', '/v1/batches?model=mlp']);
    const headers: Record<string, string> = {};
    if (rng.chance(0.5)) headers['content-type'] = rng.pick(['application/json', ...NDJSON_TYPES, 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']);
    c = { kind: 'fetch', label: `random bytes -> POST ${path}`, method: 'POST', path, headers, body: rng.bytes(rng.int(4096)) };
  } else if (r < 14) {
    // Truncated JSON of a valid-looking body.
    const full = rng.chance(0.5) ? jobBody(rng) : batchJsonBody(rng);
    const path = full.includes('"items"') ? '/v1/batches' : '/v1/jobs';
    c = { kind: 'fetch', label: `truncated JSON -> ${path}`, method: 'POST', path, headers: { 'content-type': 'application/json' }, body: full.slice(0, rng.int(full.length)) };
  } else if (r < 38) {
    // Wrong types for the fields of POST /v1/jobs, with the usual headers now and then.
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (rng.chance(0.15)) headers.prefer = rng.pick(PREFERS);
    if (rng.chance(0.1)) headers['idempotency-key'] = rng.pick(IDEMPOTENCY_KEYS);
    c = { kind: 'fetch', label: 'job fields', method: 'POST', path: '/v1/jobs', headers, body: jobBody(rng) };
  } else if (r < 48) {
    c = { kind: 'fetch', label: 'batch JSON fields', method: 'POST', path: '/v1/batches', headers: { 'content-type': 'application/json' }, body: batchJsonBody(rng) };
  } else if (r < 58) {
    const path = `/v1/batches${ndjsonQuery(rng)}`;
    c = { kind: 'fetch', label: `NDJSON ${path}`, method: 'POST', path, headers: { 'content-type': rng.pick(NDJSON_TYPES) }, body: ndjsonBody(rng) };
  } else if (r < 70) {
    // Percent-garbage, traversal, long and odd ids on every route with one.
    const [method, path] = rng.pick(ROUTES)(rng.pick(BAD_IDS));
    c = { kind: 'fetch', label: `id ${method} ${path.slice(0, 60)}`, method, path, headers: rng.chance(0.2) ? { prefer: rng.pick(PREFERS) } : {} };
  } else if (r < 80) {
    // Content-Encoding, right or wrong, over bodies that decode or do not.
    const coding = rng.pick(CODINGS);
    const form = rng.int(3);
    const plain = Buffer.from(form === 0 ? jobBody(rng) : form === 1 ? batchJsonBody(rng) : ndjsonBody(rng).toString('latin1'), 'latin1');
    const path = form === 0 ? '/v1/jobs' : form === 1 ? '/v1/batches' : '/v1/batches?model=mlp';
    const headers: Record<string, string> = { 'content-encoding': coding, 'content-type': form === 2 ? 'application/x-ndjson' : 'application/json' };
    c = { kind: 'fetch', label: `Content-Encoding ${JSON.stringify(coding)} -> ${path}`, method: 'POST', path, headers, body: encodedBody(rng, plain, coding), mayCloseEarly: true };
  } else if (r < 86) {
    // Header values: Prefer, Idempotency-Key and made-up headers, long and latin-1.
    const headers: Record<string, string> = { 'content-type': 'application/json', prefer: rng.chance(0.5) ? rng.pick(PREFERS) : headerValue(rng) };
    headers['idempotency-key'] = rng.chance(0.5) ? rng.pick(IDEMPOTENCY_KEYS) : headerValue(rng);
    headers['x-fuzz'] = headerValue(rng);
    if (rng.chance(0.3)) headers['content-type'] = headerValue(rng);
    const get = rng.chance(0.3);
    // Several 8000-character values may pass Node's 16 KiB: then Node answers 431 itself.
    c = get
      ? { kind: 'fetch', label: 'header values -> GET job', method: 'GET', path: `/v1/jobs/${rng.pick(['abc', 'wakyyyan0000000000000000000000'])}`, headers: { prefer: headers.prefer!, 'x-fuzz': headers['x-fuzz']! }, nodeLevel: true }
      : { kind: 'fetch', label: 'header values -> POST job', method: 'POST', path: '/v1/jobs', headers, body: jobBody(rng), nodeLevel: true };
  } else if (r < 91) {
    // Methods and routes nobody serves.
    const method = rng.pick(['PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD', 'GET', 'POST']);
    const path = rng.pick(['/v1/jobs', '/v1', '/v1/', '/', '/v1/models/mlp/versions', '/v1/batches/x/y/z', '/healthz/x', '//v1//jobs', '/v1/jobs?x=%zz', '/v1/batches?limit=%zz&limit=2', '/metrics/%zz']);
    c = { kind: 'fetch', label: `${method} ${path}`, method, path, headers: {}, ...(method === 'POST' || method === 'PUT' || method === 'PATCH' ? { body: '{}' } : {}) };
  } else if (r < 94) {
    // Over Node's 16 KiB of request line and headers: Node itself answers 431.
    const long = rng.chance(0.5);
    c = long
      ? { kind: 'fetch', label: 'URL over 16 KiB', method: 'GET', path: `/v1/jobs/${'x'.repeat(17_000 + rng.int(10_000))}`, headers: {}, nodeLevel: true }
      : { kind: 'fetch', label: 'headers over 16 KiB', method: 'GET', path: '/v1/models', headers: { 'x-big': 'y'.repeat(17_000 + rng.int(10_000)) }, nodeLevel: true };
  } else {
    c = rawCase(rng);
  }
  if (c.kind === 'fetch') return withKeyVariant(rng, { ...c, label: `#${i} ${c.label}` });
  return { ...c, label: `#${i} ${c.label}` };
}

const AUTH = 'Authorization: Bearer test-key-a\r\n';

/** Requests only a raw socket can send: every one ends its headers and carries Connection: close, so an answer is due. */
function rawCase(rng: Rng): RawCase {
  const job = Buffer.from(`{"model":"mlp","input":{"features":${JSON.stringify(features(rng))}}}`);
  const req = (head: string, body: Buffer | string = '') => Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(body)]);
  const cases: Array<[string, () => Buffer]> = [
    ['NUL in the method', () => req('G\u0000T /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')],
    ['a method of latin-1 bytes', () => req('P\u00d6ST /v1/jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')],
    ['NUL in a header value', () => req(`GET /v1/models HTTP/1.1\r\nHost: x\r\n${AUTH}X-A: a\u0000b\r\nConnection: close\r\n\r\n`)],
    ['a control byte in a header name', () => req(`GET /v1/models HTTP/1.1\r\nHost: x\r\nX\u0001A: 1\r\nConnection: close\r\n\r\n`)],
    ['latin-1 in Prefer', () => req(`GET /v1/jobs/abc HTTP/1.1\r\nHost: x\r\n${AUTH}Prefer: wait=\u00ff\u00fe\r\nConnection: close\r\n\r\n`)],
    ['latin-1 in Authorization', () => req(`GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \u00ff\u00e9\r\nConnection: close\r\n\r\n`)],
    ['latin-1 in Idempotency-Key', () => req(`POST /v1/jobs HTTP/1.1\r\nHost: x\r\n${AUTH}Idempotency-Key: \u00e9\r\nContent-Length: ${job.length}\r\nConnection: close\r\n\r\n`, job)],
    ['latin-1 in Content-Encoding', () => req(`POST /v1/jobs HTTP/1.1\r\nHost: x\r\n${AUTH}Content-Encoding: g\u00fczip\r\nContent-Length: ${job.length}\r\nConnection: close\r\n\r\n`, job)],
    ['raw latin-1 bytes in the path', () => req(`GET /v1/batches/\u00ff\u00fe HTTP/1.1\r\nHost: x\r\n${AUTH}Connection: close\r\n\r\n`)],
    ['a space in the path', () => req(`GET /v1/jobs/a b HTTP/1.1\r\nHost: x\r\n${AUTH}Connection: close\r\n\r\n`)],
    ['two Content-Lengths that disagree', () => req(`POST /v1/jobs HTTP/1.1\r\nHost: x\r\n${AUTH}Content-Length: 2\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{}`)],
    ['Content-Length and chunked', () => req(`POST /v1/jobs HTTP/1.1\r\nHost: x\r\n${AUTH}Content-Length: 2\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n`)],
    ['a bad chunk size', () => req(`POST /v1/jobs HTTP/1.1\r\nHost: x\r\n${AUTH}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`)],
    ['a negative Content-Length', () => req(`POST /v1/jobs HTTP/1.1\r\nHost: x\r\n${AUTH}Content-Length: -1\r\nConnection: close\r\n\r\n`)],
    ['an absurd Content-Length, no body', () => req(`POST /v1/jobs HTTP/1.1\r\nHost: x\r\n${AUTH}Content-Length: 99999999999999999999\r\nConnection: close\r\n\r\n`)],
    ['a Content-Length over the limit', () => req(`POST /v1/jobs HTTP/1.1\r\nHost: x\r\n${AUTH}Content-Length: 20000000\r\nConnection: close\r\n\r\n{}`)],
    ['obs-fold in a header', () => req(`GET /v1/models HTTP/1.1\r\nHost: x\r\n${AUTH}X-A: a\r\n  b\r\nConnection: close\r\n\r\n`)],
    ['bare LF line ends', () => req(`GET /v1/models HTTP/1.1\nHost: x\n${AUTH.replace('\r\n', '\n')}Connection: close\n\n`)],
    ['HTTP/1.0 without Host', () => req('GET /healthz HTTP/1.0\r\n\r\n')],
    ['an unknown HTTP version', () => req('GET /healthz HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n')],
    ['an absolute-form URL', () => req(`GET http://evil.example/v1/jobs/abc HTTP/1.1\r\nHost: x\r\n${AUTH}Connection: close\r\n\r\n`)],
    ['an asterisk-form URL', () => req('OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')],
    ['two Authorization headers', () => req(`GET /v1/models HTTP/1.1\r\nHost: x\r\n${AUTH}Authorization: Bearer nope\r\nConnection: close\r\n\r\n`)],
    ['two Content-Types on an upload', () => req(`POST /v1/batches?model=mlp HTTP/1.1\r\nHost: x\r\n${AUTH}Content-Type: application/x-ndjson\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{}\n`)],
    ['random bytes', () => Buffer.concat([rng.bytes(1 + rng.int(200)), Buffer.from('\r\n\r\n')])],
  ];
  const [label, make] = rng.pick(cases);
  return { kind: 'raw', label: `raw: ${label}`, bytes: make() };
}

/** The 20 MB NDJSON line: twice MAX_BODY_BYTES's default, between two good lines. */
export function twentyMegabyteLine(): Buffer {
  const good = (id: string) => `{"custom_id":"${id}","input":{"features":[${new Array(MLP_FEATURES).fill(0.5).join(',')}]}}\n`;
  return Buffer.concat([Buffer.from(good('before')), Buffer.from(`{"custom_id":"huge","input":{"features":[`), Buffer.alloc(20 * 1024 * 1024, '0,'), Buffer.from('0]}}\n'), Buffer.from(good('after'))]);
}

/** A line just under 10 MiB that JSON.parse turns into the most heap per byte (empty objects): a parse-thread killer before its heap was sized. */
export function heapHeavyLine(limit: number): Buffer {
  const head = '{"input":{"features":[';
  const tail = '{}]}}\n';
  const n = Math.floor((limit - head.length - tail.length) / 3);
  return Buffer.concat([Buffer.from(head), Buffer.alloc(n * 3, '{},'), Buffer.from(tail)]);
}
