import { z } from 'zod';

/**
 * The platform's whole configuration, parsed once from the environment at
 * process start. Nothing else in the codebase reads `process.env`: apps call
 * `loadConfig(process.env)` in their `main.ts` and pass the result down.
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
  /** API key → tenant. When `API_KEYS` is unset outside production, `dev-key` → `dev`. */
  apiKeys: Map<string, string>;
  /** True when the keys are the development default, so the app can warn. */
  apiKeysAreDevDefault: boolean;
  /** @default infer */
  queuePrefix: string;
  /** @default 86_400_000 (24 h) */
  resultTtlMs: number;
  /** @default 10 MiB */
  maxBodyBytes: number;
  /** @default 1_000_000 */
  maxQueueDepth: number;
  /** @default 1000 */
  rateLimitPerSecond: number;
  /** @default false */
  webhookAllowPrivate: boolean;
  /** Delays between webhook delivery attempts. @default Svix-like, 5 s … 10 h */
  webhookRetryDelaysMs: number[];
  /** @default 30_000 */
  workerLockMs: number;
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
}

export const DEFAULT_WEBHOOK_RETRY_DELAYS_MS = [
  5_000, // 5 s
  300_000, // 5 min
  1_800_000, // 30 min
  7_200_000, // 2 h
  18_000_000, // 5 h
  36_000_000, // 10 h
];

export const DEV_API_KEY = 'dev-key';
export const DEV_TENANT = 'dev';

/** Booleans as people write them in env files; anything else is an error, not `false`. */
const booleanString = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const positiveInt = z.coerce.number().int().positive();

const apiKeysString = z.string().transform((raw, ctx) => {
  const keys = new Map<string, string>();
  for (const [position, entry] of raw.split(',').map((s) => s.trim()).filter(Boolean).entries()) {
    const colon = entry.indexOf(':');
    const tenant = entry.slice(0, colon).trim();
    const key = entry.slice(colon + 1).trim();
    if (colon <= 0 || !tenant || !key) {
      // Never echo the entry: without its colon it may be a bare secret key.
      ctx.addIssue({ code: 'custom', message: `entry ${position + 1} is not of the form tenant:key` });
      return z.NEVER;
    }
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(tenant)) {
      ctx.addIssue({ code: 'custom', message: `tenant "${tenant}" must be 1-64 of A-Z a-z 0-9 _ . -` });
      return z.NEVER;
    }
    if (keys.has(key)) {
      ctx.addIssue({ code: 'custom', message: `a key is listed twice (tenant ${tenant})` });
      return z.NEVER;
    }
    keys.set(key, tenant);
  }
  if (keys.size === 0) {
    ctx.addIssue({ code: 'custom', message: 'no keys given' });
    return z.NEVER;
  }
  return keys;
});

const delaysString = z.string().transform((raw, ctx) => {
  const parts = raw.split(',').map((s) => s.trim());
  const delays = parts.map(Number);
  if (parts.length === 0 || delays.some((d) => !Number.isInteger(d) || d < 0)) {
    ctx.addIssue({ code: 'custom', message: 'expected comma-separated non-negative integers (milliseconds)' });
    return z.NEVER;
  }
  return delays;
});

const EnvSchema = z.object({
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, 'must start with redis:// or rediss://')
    .default('redis://127.0.0.1:6379'),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().min(1).default('0.0.0.0'),
  MODEL_REPOSITORY: z.string().min(1).default('./models'),
  API_KEYS: apiKeysString.optional(),
  QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'must be 1-64 of A-Z a-z 0-9 _ . : -')
    .default('infer'),
  RESULT_TTL_SECONDS: positiveInt.default(86_400),
  MAX_BODY_BYTES: positiveInt.default(10 * 1024 * 1024),
  MAX_QUEUE_DEPTH: positiveInt.default(1_000_000),
  RATE_LIMIT_PER_SECOND: positiveInt.default(1000),
  WEBHOOK_ALLOW_PRIVATE: booleanString.default(false),
  WEBHOOK_RETRY_DELAYS_MS: delaysString.optional(),
  WORKER_LOCK_MS: z.coerce.number().int().min(1000).default(30_000),
  WORKER_MODELS: z.string().default(''),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  MAX_WAIT_SECONDS: z.coerce.number().int().min(1).max(600).default(60),
  BATCH_PARSE_THREAD: booleanString.default(true),
  NODE_ENV: z.string().optional(),
});

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Parse and validate the environment. Throws one `ConfigError` naming every
 * bad variable, so an operator fixes them all in one go.
 */
export function loadConfig(env: Record<string, string | undefined>): Config {
  // Empty strings are what `FOO=` in an env file gives: treat them as unset.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = EnvSchema.safeParse(present);
  const problems = parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.') || '(env)'}: ${i.message}`);
  // Checked alongside the schema, not after it, so this is named in the same error as every other bad variable.
  if (present.NODE_ENV === 'production' && present.API_KEYS === undefined) {
    problems.push('API_KEYS: required when NODE_ENV=production (format tenant:key,tenant:key)');
  }
  if (!parsed.success || problems.length > 0) throw new ConfigError(problems);
  const e = parsed.data;
  return {
    redisUrl: e.REDIS_URL,
    port: e.PORT,
    host: e.HOST,
    modelRepository: e.MODEL_REPOSITORY,
    apiKeys: e.API_KEYS ?? new Map([[DEV_API_KEY, DEV_TENANT]]),
    apiKeysAreDevDefault: !e.API_KEYS,
    queuePrefix: e.QUEUE_PREFIX,
    resultTtlMs: e.RESULT_TTL_SECONDS * 1000,
    maxBodyBytes: e.MAX_BODY_BYTES,
    maxQueueDepth: e.MAX_QUEUE_DEPTH,
    rateLimitPerSecond: e.RATE_LIMIT_PER_SECOND,
    webhookAllowPrivate: e.WEBHOOK_ALLOW_PRIVATE,
    webhookRetryDelaysMs: e.WEBHOOK_RETRY_DELAYS_MS ?? DEFAULT_WEBHOOK_RETRY_DELAYS_MS,
    workerLockMs: e.WORKER_LOCK_MS,
    workerModels: e.WORKER_MODELS.split(',').map((s) => s.trim()).filter(Boolean),
    logLevel: e.LOG_LEVEL,
    maxWaitMs: e.MAX_WAIT_SECONDS * 1000,
    batchParseThread: e.BATCH_PARSE_THREAD,
  };
}
