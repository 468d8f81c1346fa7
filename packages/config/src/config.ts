import { hash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';

/**
 * The platform's whole configuration, parsed once from the environment at
 * process start. Nothing else in the codebase reads `process.env`: an app
 * process gets it from `runProcess` (packages/lifecycle), `npm start` from
 * scripts/start.ts, and passes the result down.
 */
export interface Config {
  /** @default redis://127.0.0.1:6379 */
  redisUrl: string;
  /** @default 8080 */
  port: number;
  /** @default 0.0.0.0 */
  host: string;
  /** @default ./models */
  modelRepository: string;
  /**
   * `apiKeyDigest(key)` → tenant, from `API_KEYS` and `API_KEYS_FILE` together.
   * Only digests: the keys themselves are not kept once the config is loaded,
   * and a presented key is looked up by its digest (see apiKeyDigest).
   * When neither is set outside production, `dev-key` → `dev`.
   */
  apiKeyDigests: Map<string, string>;
  /** True when the keys are the development default, so the app can warn. */
  apiKeysAreDevDefault: boolean;
  /**
   * `apiKeyDigest(key)` → admin name, from `ADMIN_API_KEYS` (`name:key,…`):
   * the operators' keys for /admin routes (the queue dashboard, model
   * routing); the name is the actor recorded in events. Digests only, as
   * for API keys. Empty: every admin route answers 403.
   */
  adminKeyDigests: Map<string, string>;
  /**
   * OTEL_EXPORTER_OTLP_ENDPOINT: where traces go over OTLP/HTTP (protobuf),
   * e.g. `http://otel-collector:4318`. Unset: no tracing at all (no spans
   * are created, no trace context travels with jobs).
   */
  otlpEndpoint: string | undefined;
  /** Batches one tenant may have open (uploading, queued or running) at once; past it 429. @default 100 */
  tenantMaxOpenBatches: number;
  /** Instances one tenant may have queued across all queues; past it 429. Unset: no per-tenant limit. */
  tenantMaxQueued: number | undefined;
  /** @default infer */
  queuePrefix: string;
  /** @default 86_400_000 (24 h) */
  resultTtlMs: number;
  /** @default 10 MiB */
  maxBodyBytes: number;
  /** @default 1_000_000 */
  maxQueueDepth: number;
  /** The most output bytes one job or batch item keeps (the worker's); past it, it fails `output_too_large`. At most 32 MiB. @default 16 MiB */
  maxOutputBytes: number;
  /** @default 1000 */
  rateLimitPerSecond: number;
  /** @default false */
  webhookAllowPrivate: boolean;
  /** Delays between webhook delivery attempts. @default Svix-like, 5 s … 10 h */
  webhookRetryDelaysMs: number[];
  /** @default 30_000 */
  workerLockMs: number;
  /** How long one model run may hold a worker's event loop before its locks are let lapse. @default 900_000 */
  workerMaxRunMs: number;
  /** Models this worker serves; empty means every model in the repository. */
  workerModels: string[];
  /** @default info */
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Longest `Prefer: wait=N` honoured. @default 60_000 */
  maxWaitMs: number;
  /**
   * Read NDJSON batch uploads on a thread of their own (splitting lines and
   * reading numbers is most of an upload's CPU), beside the event loop.
   * @default true
   */
  batchParseThread: boolean;
  /**
   * During a shutdown, a second SIGTERM/SIGINT this long or longer after the
   * first forces the exit; sooner, it is a duplicate of the first and ignored.
   * @default 2000
   */
  shutdownForceGraceMs: number;
  /**
   * Where a worker serves `/metrics` and `/healthz` (on HOST), for Prometheus
   * to scrape each replica; 0 picks a free port (logged).
   * @default 9464
   */
  workerMetricsPort: number;
  /**
   * How often gateways and workers look at MODEL_REPOSITORY for added and
   * removed versions, in ms; 0: never (an admin's load still makes them look).
   * @default 5000
   */
  modelPollMs: number;
}

export const DEFAULT_WEBHOOK_RETRY_DELAYS_MS = [
  5_000, // 5 s
  300_000, // 5 min
  1_800_000, // 30 min
  7_200_000, // 2 h
  18_000_000, // 5 h
  36_000_000, // 10 h
];

/**
 * The most MAX_OUTPUT_BYTES may be: 32 MiB of output print as at most ~450
 * million characters of JSON (an FP16 value, 2 bytes, as up to about 26 of
 * them), under V8's longest string (~536 million) and Redis's largest value
 * (512 MB): a job.completed webhook's body is printed, and stored, as one.
 */
export const MAX_OUTPUT_BYTES_CEILING = 32 * 1024 * 1024;
/** MAX_OUTPUT_BYTES's default: 16 MiB, ~80 MB of JSON, which the gateway prints in a second or two. */
export const MAX_OUTPUT_BYTES_DEFAULT = 16 * 1024 * 1024;

export const DEV_API_KEY = 'dev-key';
export const DEV_TENANT = 'dev';

/** Booleans as people write them in env files; anything else is an error, not `false`. */
const booleanString = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

/** A number in decimal, as env files write them: Number() (z.coerce) would also read 0x1F90 as 8080, 1e3, 0b11. */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)$/;
function decimal<T extends z.ZodType>(schema: T) {
  // Not a decimal: left a string, which the number schema refuses ("must be a number", naming what was given).
  return z.preprocess((v) => (typeof v === 'string' && DECIMAL.test(v.trim()) ? Number(v) : v), schema);
}

const positiveInt = decimal(z.number().int().positive());

/**
 * The digest an API key is known by: SHA-256, base64url. The gateway hashes
 * every presented key and looks the digest up in a Map, so no comparison
 * ever runs over the bytes of a secret (a string compare that stops at the
 * first differing byte would time how much of a guess is right), and the
 * process holds digests, never keys.
 */
export function apiKeyDigest(key: string): string {
  // One call, no Hash object: less than half the CPU of createHash().update().digest() per request.
  return hash('sha256', key, 'base64url');
}

/** One `tenant:key` entry and where it came from, for error messages that never quote it. */
interface KeyEntry {
  /** `entry 2` (API_KEYS) or `line 7` (API_KEYS_FILE). */
  where: string;
  text: string;
}

/**
 * Add `tenant:key` entries to `digests`; each problem is pushed as
 * `VARIABLE: where: what`, naming the entry but never echoing it (without
 * its colon an entry may be a bare secret).
 */
function addKeyEntries(variable: string, entries: KeyEntry[], digests: Map<string, string>, problems: string[], owner = 'tenant'): void {
  for (const { where, text } of entries) {
    const colon = text.indexOf(':');
    const tenant = text.slice(0, colon).trim();
    const key = text.slice(colon + 1).trim();
    if (colon <= 0 || !tenant || !key) {
      problems.push(`${variable}: ${where} is not of the form ${owner}:key`);
    } else if (!/^[A-Za-z0-9_.-]{1,64}$/.test(tenant)) {
      // Not quoted: an entry written key:tenant puts the key here (a base64 key fails this check).
      problems.push(`${variable}: ${where}: the ${owner} name must be 1-64 of A-Z a-z 0-9 _ . - (is the entry written ${owner}:key?)`);
    } else if (/\s/.test(key)) {
      // `Authorization: Bearer <key>` carries no whitespace: such a key could never be presented.
      problems.push(`${variable}: ${where}: the key contains whitespace`);
    } else if (!/^[\x21-\x7e]+$/.test(key)) {
      // Header values reach the gateway as bytes read one to a character: a key outside visible ASCII
      // (é, ключ) would never match what a client sends for it (its UTF-8 bytes).
      problems.push(`${variable}: ${where}: the key contains characters other than visible ASCII`);
    } else {
      const digest = apiKeyDigest(key);
      if (digests.has(digest)) problems.push(`${variable}: ${where}: a key is listed twice (${owner} ${tenant})`);
      else digests.set(digest, tenant);
    }
  }
}

/** `API_KEYS`: `tenant:key,tenant:key`, counted from 1 among the non-empty entries. */
function apiKeysEntries(raw: string): KeyEntry[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((text, i) => ({ where: `entry ${i + 1}`, text }));
}

/** `API_KEYS_FILE`: one `tenant:key` a line; blank lines and lines starting with `#` are skipped. */
function apiKeysFileEntries(path: string, problems: string[]): KeyEntry[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    problems.push(`API_KEYS_FILE: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    return [];
  }
  const entries: KeyEntry[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const trimmed = line.trim();
    if (trimmed && !trimmed.startsWith('#')) entries.push({ where: `line ${i + 1}`, text: trimmed });
  });
  if (entries.length === 0) problems.push(`API_KEYS_FILE: ${path} holds no keys`);
  return entries;
}

/**
 * Both sources merged: a deployment may keep most keys in a file (a mounted
 * secret) and add one in the environment. A key listed twice, in one source
 * or across both, is an error: one of the two tenants would silently lose it.
 */
function loadApiKeys(e: { API_KEYS?: string | undefined; API_KEYS_FILE?: string | undefined }, problems: string[]): Map<string, string> | undefined {
  if (e.API_KEYS === undefined && e.API_KEYS_FILE === undefined) return undefined;
  const digests = new Map<string, string>();
  if (e.API_KEYS !== undefined) {
    const entries = apiKeysEntries(e.API_KEYS);
    if (entries.length === 0) problems.push('API_KEYS: no keys given');
    addKeyEntries('API_KEYS', entries, digests, problems);
  }
  if (e.API_KEYS_FILE !== undefined) addKeyEntries('API_KEYS_FILE', apiKeysFileEntries(e.API_KEYS_FILE, problems), digests, problems);
  return digests;
}

/**
 * `ADMIN_API_KEYS`: `name:key,name:key`. A key may not also be a tenant's
 * API key: the gateway answers a tenant's key on an admin route with 403,
 * which such a key would make ambiguous.
 */
function loadAdminKeys(raw: string | undefined, apiKeyDigests: ReadonlyMap<string, string>, problems: string[]): Map<string, string> {
  const digests = new Map<string, string>();
  if (raw === undefined) return digests;
  const entries = apiKeysEntries(raw);
  if (entries.length === 0) problems.push('ADMIN_API_KEYS: no keys given');
  addKeyEntries('ADMIN_API_KEYS', entries, digests, problems, 'name');
  for (const [digest, name] of digests) {
    if (apiKeyDigests.has(digest)) problems.push(`ADMIN_API_KEYS: the key of admin ${name} is also a tenant's API key`);
  }
  return digests;
}

/** The longest webhook retry schedule: a year, far past any receiver's outage worth waiting out. */
const MAX_WEBHOOK_SCHEDULE_MS = 365 * 24 * 3600 * 1000;

const delaysString = z.string().transform((raw, ctx) => {
  const parts = raw.split(',').map((s) => s.trim());
  const delays = parts.map(Number);
  // Number('') is 0: an empty entry ("5000,,300000", a trailing comma) would be an immediate retry nobody wrote.
  if (parts.some((part) => part === '') || delays.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    ctx.addIssue({ code: 'custom', message: 'expected comma-separated non-negative integers (milliseconds)' });
    return z.NEVER;
  }
  // An event's delivery log lives as long as its schedule (plus a margin): a schedule past Redis's longest
  // expiry would have every event refused when it is created, and no webhook ever sent.
  if (delays.reduce((a, d) => a + d, 0) > MAX_WEBHOOK_SCHEDULE_MS) {
    ctx.addIssue({ code: 'custom', message: `the delays sum to more than a year (${MAX_WEBHOOK_SCHEDULE_MS} ms)` });
    return z.NEVER;
  }
  return delays;
});

/** A redis:// URL parsed, or null when the URL parser refuses it. */
function parsedUrl(url: string): URL | null {
  try {
    return new URL(url);
  } catch {
    return null;
  }
}

/**
 * The longest timer Node keeps (2^31 − 1 ms, ~24.8 days): a longer one fires
 * after 1 ms instead, with a TimeoutOverflowWarning. Settings that become
 * timers stay within it.
 */
const MAX_TIMER_MS = 2_147_483_647;

const EnvSchema = z.object({
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, 'must start with redis:// or rediss://')
    // Checked here, or ioredis throws "Invalid URL" (with a stack, naming nothing) when the process connects.
    .refine((url) => parsedUrl(url) !== null, 'is not a URL that can be parsed (a port must be 0-65535)')
    // The path is the database number, or nothing (0): anything else ioredis would send as SELECT NaN.
    .refine((url) => /^\/?(\d+)?$/.test(parsedUrl(url)?.pathname ?? ''), 'the path after the host must be a database number (redis://host:6379/2) or nothing')
    .default('redis://127.0.0.1:6379'),
  PORT: decimal(z.number().int().min(0).max(65535)).default(8080),
  HOST: z.string().trim().min(1).default('0.0.0.0'),
  MODEL_REPOSITORY: z.string().trim().min(1).default('./models'),
  API_KEYS: z.string().optional(),
  API_KEYS_FILE: z.string().optional(),
  ADMIN_API_KEYS: z.string().optional(),
  // z.string().url() takes "otel-collector:4318" (scheme "otel-collector:"), which the exporter then cannot send to.
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL, e.g. http://otel-collector:4318' }).optional(),
  QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'must be 1-64 of A-Z a-z 0-9 _ . : -')
    .default('infer'),
  // Ten years: past about 10^15 s, Redis refuses the expiry outright (the ms overflow), and every job's end with it.
  RESULT_TTL_SECONDS: decimal(z.number().int().positive().max(315_360_000)).default(86_400),
  MAX_BODY_BYTES: positiveInt.default(10 * 1024 * 1024),
  MAX_QUEUE_DEPTH: positiveInt.default(1_000_000),
  MAX_OUTPUT_BYTES: decimal(z.number().int().positive().max(MAX_OUTPUT_BYTES_CEILING)).default(MAX_OUTPUT_BYTES_DEFAULT),
  RATE_LIMIT_PER_SECOND: positiveInt.default(1000),
  WEBHOOK_ALLOW_PRIVATE: booleanString.default(false),
  WEBHOOK_RETRY_DELAYS_MS: delaysString.optional(),
  WORKER_LOCK_MS: decimal(z.number().int().min(1000).max(MAX_TIMER_MS)).default(30_000),
  WORKER_MAX_RUN_MS: decimal(z.number().int().min(1000).max(MAX_TIMER_MS)).default(900_000),
  WORKER_MODELS: z.string().default(''),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  MAX_WAIT_SECONDS: decimal(z.number().int().min(1).max(600)).default(60),
  BATCH_PARSE_THREAD: booleanString.default(true),
  TENANT_MAX_OPEN_BATCHES: positiveInt.default(100),
  TENANT_MAX_QUEUED: positiveInt.optional(),
  SHUTDOWN_FORCE_GRACE_MS: decimal(z.number().int().min(0).max(MAX_TIMER_MS)).default(2000),
  WORKER_METRICS_PORT: decimal(z.number().int().min(0).max(65535)).default(9464),
  MODEL_POLL_SECONDS: decimal(z.number().min(0).max(86_400)).default(5),
  NODE_ENV: z.string().optional(),
});

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * A schema problem in an operator's words: what was given and what is
 * wanted, not zod's types ("expected number, received NaN"). Messages of
 * the schema's own (a refine's) are already so.
 */
function plainly(issue: z.core.$ZodIssue, env: Record<string, string | undefined>): string {
  const name = issue.path.join('.');
  const given = typeof env[name] === 'string' ? ` (got "${env[name]}")` : '';
  if (issue.code === 'invalid_type' && issue.expected === 'number') return `must be a number${given}`;
  if (issue.code === 'invalid_type' && issue.expected === 'int') return `must be a whole number${given}`;
  if (issue.code === 'too_small' && issue.origin === 'number') return `must be ${issue.inclusive ? 'at least' : 'more than'} ${String(issue.minimum)}${given}`;
  if (issue.code === 'too_big' && issue.origin === 'number') return `must be ${issue.inclusive ? 'at most' : 'less than'} ${String(issue.maximum)}${given}`;
  return issue.message;
}

/**
 * Parse and validate the environment. Throws one `ConfigError` naming every
 * bad variable, so an operator fixes them all in one go.
 */
export function loadConfig(env: Record<string, string | undefined>): Config {
  // Empty strings are what `FOO=` in an env file gives: treat them as unset, and blank ones (`FOO= `) too.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v.trim() !== ''));
  const parsed = EnvSchema.safeParse(present);
  const problems = parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.') || '(env)'}: ${plainly(i, present)}`);
  // Checked alongside the schema, not after it, so these are named in the same error as every other bad variable.
  // Compared exactly, as Node's libraries compare it: a near miss (" production", "Production") would run a
  // production deployment with the development key, so it is refused rather than read as "not production".
  if (present.NODE_ENV !== undefined && present.NODE_ENV !== 'production' && present.NODE_ENV.trim().toLowerCase() === 'production') {
    problems.push(`NODE_ENV: write it exactly "production" (got "${present.NODE_ENV}")`);
  }
  if (present.NODE_ENV === 'production' && present.API_KEYS === undefined && present.API_KEYS_FILE === undefined) {
    problems.push('API_KEYS: required when NODE_ENV=production (format tenant:key,tenant:key; or API_KEYS_FILE)');
  }
  const apiKeyDigests = loadApiKeys(present, problems);
  const tenantKeys = apiKeyDigests ?? new Map([[apiKeyDigest(DEV_API_KEY), DEV_TENANT]]);
  const adminKeyDigests = loadAdminKeys(present.ADMIN_API_KEYS, tenantKeys, problems);
  if (!parsed.success || problems.length > 0) throw new ConfigError(problems);
  const e = parsed.data;
  return {
    redisUrl: e.REDIS_URL,
    port: e.PORT,
    host: e.HOST,
    modelRepository: e.MODEL_REPOSITORY,
    apiKeyDigests: tenantKeys,
    apiKeysAreDevDefault: !apiKeyDigests,
    adminKeyDigests,
    otlpEndpoint: e.OTEL_EXPORTER_OTLP_ENDPOINT,
    tenantMaxOpenBatches: e.TENANT_MAX_OPEN_BATCHES,
    tenantMaxQueued: e.TENANT_MAX_QUEUED,
    queuePrefix: e.QUEUE_PREFIX,
    resultTtlMs: e.RESULT_TTL_SECONDS * 1000,
    maxBodyBytes: e.MAX_BODY_BYTES,
    maxQueueDepth: e.MAX_QUEUE_DEPTH,
    maxOutputBytes: e.MAX_OUTPUT_BYTES,
    rateLimitPerSecond: e.RATE_LIMIT_PER_SECOND,
    webhookAllowPrivate: e.WEBHOOK_ALLOW_PRIVATE,
    webhookRetryDelaysMs: e.WEBHOOK_RETRY_DELAYS_MS ?? DEFAULT_WEBHOOK_RETRY_DELAYS_MS,
    workerLockMs: e.WORKER_LOCK_MS,
    workerMaxRunMs: e.WORKER_MAX_RUN_MS,
    workerModels: e.WORKER_MODELS.split(',').map((s) => s.trim()).filter(Boolean),
    logLevel: e.LOG_LEVEL,
    maxWaitMs: e.MAX_WAIT_SECONDS * 1000,
    batchParseThread: e.BATCH_PARSE_THREAD,
    shutdownForceGraceMs: e.SHUTDOWN_FORCE_GRACE_MS,
    workerMetricsPort: e.WORKER_METRICS_PORT,
    // 0 is "never poll": a positive value never rounds down to it.
    modelPollMs: e.MODEL_POLL_SECONDS > 0 ? Math.max(1, Math.round(e.MODEL_POLL_SECONDS * 1000)) : 0,
  };
}
