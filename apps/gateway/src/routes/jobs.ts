import express, { Router, type Request, type Response } from 'express';
import { CreateJobBody } from '@infer/contract';
import { badRequest } from '@infer/errors';
import { tenantOf } from '../http/auth.js';
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

/** Send a Job's JSON text as it is: it was printed once, from the stored record. */
function sendJob(res: Response, status: number, job: RenderedJob): void {
  res.status(status).set('Content-Type', 'application/json; charset=utf-8').send(job.json);
}

export function jobRoutes(service: JobService, metrics: GatewayMetrics, options: JobRoutesOptions): Router {
  const router = Router();
  // Any content type is read as JSON: `curl -d` sends form-encoded by default.
  const json = express.json({ limit: options.maxBodyBytes, type: () => true, strict: false });

  router.post('/', json, async (req, res) => {
    const body = parseCreateJob(req.body);
    const waitMs = preferWaitMs(req.headers.prefer, options.maxWaitMs);
    const job = await service.submit(tenantOf(req), body, {
      waitMs,
      signal: waitMs ? clientGone(res) : undefined,
      idempotencyKey: idempotencyKeyOf(req),
    });
    if (job.replayed) res.set('Idempotent-Replayed', 'true');
    else metrics.jobsSubmitted.inc({ model: job.model, version: job.version });
    if (waitMs !== undefined) res.set('Preference-Applied', `wait=${Math.round(waitMs / 1000)}`);
    res.set('Location', `/v1/jobs/${job.id}`);
    // A replay answers 200 with the first job, whatever its status.
    sendJob(res, job.ended || job.replayed ? 200 : 202, job);
  });

  router.get('/:id', async (req, res) => {
    const waitMs = preferWaitMs(req.headers.prefer, options.maxWaitMs);
    const job = await service.get(tenantOf(req), req.params.id, waitMs, waitMs ? clientGone(res) : undefined);
    if (waitMs !== undefined) res.set('Preference-Applied', `wait=${Math.round(waitMs / 1000)}`);
    sendJob(res, 200, job);
  });

  router.post('/:id/cancel', async (req, res) => {
    sendJob(res, 200, await service.cancel(tenantOf(req), req.params.id));
  });

  return router;
}
