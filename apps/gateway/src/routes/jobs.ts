import type { Express, Request, RequestHandler, Response } from 'express';
import { CreateJobBody } from '@infer/contract';
import { badRequest } from '@infer/errors';
import { tenantOf } from '../http/auth.js';
import { jsonBody } from '../http/json-body.js';
import { preferWaitMs } from '../http/prefer.js';
import type { JobService, RenderedJob } from '../jobs/job-service.js';
import type { GatewayMetrics } from '../metrics.js';

export interface JobRoutesOptions {
  maxBodyBytes: number;
  maxWaitMs: number;
}

/** An AbortSignal that fires when the client goes away, to drop its waiter. */
function clientGone(res: Response): AbortSignal {
  const controller = new AbortController();
  // 'close' also fires after a normal response: abort only when the client
  // left first (abort() builds a DOMException, a measurable cost per request).
  res.once('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  return controller.signal;
}

export function parseCreateJob(body: unknown): CreateJobBody {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    // Valid JSON of the wrong shape: invalid_input, as the OpenAPI document says; invalid_json is for bytes that do not parse.
    throw badRequest('invalid_input', 'The body must be a JSON object');
  }
  const parsed = CreateJobBody.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length ? issue.path.join('.') : 'body';
    throw badRequest('invalid_input', `${where}: ${issue.message}`);
  }
  return parsed.data;
}

/** `Idempotency-Key`: 1-255 visible ASCII characters, as Stripe and the IETF draft take them. */
function idempotencyKeyOf(req: Request): string | undefined {
  const key = req.headers['idempotency-key'];
  if (key === undefined) return undefined;
  if (typeof key !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(key)) {
    throw badRequest('invalid_input', 'Idempotency-Key must be 1-255 visible ASCII characters');
  }
  return key;
}

/**
 * Send a Job's JSON text as it is (it was printed once, from the stored
 * record), through Node's own writeHead/end: these are the platform's
 * hottest answers, and Express's send() adds nothing they need.
 */
function sendJob(res: Response, status: number, job: RenderedJob, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(job.json) });
  res.end(job.json);
}

export interface JobRouteDeps {
  service: JobService;
  metrics: GatewayMetrics;
  /** What every /v1 route runs first (API key, rate limit), before the route's own work. */
  guard: RequestHandler[];
  options: JobRoutesOptions;
}

/**
 * The job routes, mounted on the app itself with their full paths: they
 * carry most of the traffic, so a request goes through its guard and its
 * handler and nothing else (no router walks, no body parser negotiation).
 */
export function mountJobRoutes(app: Express, { service, metrics, guard, options }: JobRouteDeps): void {
  app.post('/v1/jobs', ...guard, jsonBody(options.maxBodyBytes), async (req, res) => {
    const body = parseCreateJob(req.body);
    const waitMs = preferWaitMs(req.headers.prefer, options.maxWaitMs);
    const job = await service.submit(tenantOf(req), body, {
      waitMs,
      signal: waitMs ? clientGone(res) : undefined,
      idempotencyKey: idempotencyKeyOf(req),
    });
    const headers: Record<string, string> = { location: `/v1/jobs/${job.id}` };
    if (job.replayed) headers['idempotent-replayed'] = 'true';
    else metrics.jobsSubmitted.inc({ model: job.model, version: job.version });
    if (waitMs !== undefined) headers['preference-applied'] = `wait=${Math.round(waitMs / 1000)}`;
    // A replay answers 200 with the first job, whatever its status.
    sendJob(res, job.ended || job.replayed ? 200 : 202, job, headers);
  });

  app.get('/v1/jobs/:id', ...guard, async (req, res) => {
    const waitMs = preferWaitMs(req.headers.prefer, options.maxWaitMs);
    const job = await service.get(tenantOf(req), String(req.params.id), waitMs, waitMs ? clientGone(res) : undefined);
    sendJob(res, 200, job, waitMs !== undefined ? { 'preference-applied': `wait=${Math.round(waitMs / 1000)}` } : {});
  });

  app.post('/v1/jobs/:id/cancel', ...guard, async (req, res) => {
    sendJob(res, 200, await service.cancel(tenantOf(req), String(req.params.id)));
  });
}
