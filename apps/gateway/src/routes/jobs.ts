import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Express, Request, RequestHandler } from 'express';
import { CreateJobBody, IDEMPOTENCY_KEY_RE } from '@infer/contract';
import { badRequest, unauthorized } from '@infer/errors';
import { liftedBytes, restorePlaceholders, type LiftedBody } from '@infer/tensors';
import type { Logger } from '@infer/logger';
import type { Context } from '@opentelemetry/api';
import type { Tracing } from '@infer/tracing';
import { startRequestSpan } from '../http/request-tracing.js';
import { authenticate, tenantOf } from '../http/auth.js';
import { firstIssue } from '../http/first-issue.js';
import { answerCoding, codingHeaders, sendPieces } from '../http/streamed-answer.js';
import { jsonBody, readJsonBody } from '../http/json-body.js';
import { preferWaitMs } from '../http/prefer.js';
import { cancelAfterMs } from '../http/cancel-after.js';
import { mustClose, problemAnswer } from '../http/problem-middleware.js';
import { overRateLimit, type SharedRateLimiter } from '../http/rate-limit.js';
import type { InteractiveRequests } from '../batches/interactive-requests.js';
import type { JobService, RenderedJob } from '../jobs/job-service.js';
import type { GatewayMetrics } from '../metrics.js';

export interface JobRoutesOptions {
  maxBodyBytes: number;
  maxWaitMs: number;
  /** Told when a request parks to wait for its job, so uploads stop yielding to it (InteractiveRequests). */
  interactive?: Pick<InteractiveRequests, 'park'>;
}

/**
 * Called as a request parks to wait for its job (after the job is written
 * or read): it stops counting as interactive work (`interactive.park`), and
 * `then` runs if the client goes away before its answer is sent, to drop its
 * waiter. ('close' also fires after a normal response; a plain callback,
 * not an AbortSignal: one of those per request is a measurable cost.) A
 * client that sent its request and left at once is gone already: then now,
 * as 'close' has fired. A pipelined request's response is not on the
 * connection until those before it are answered, and gets no 'close' when
 * the client goes: the connection's own tells it (connectionGone).
 */
function clientGone(req: IncomingMessage, res: ServerResponse, interactive?: Pick<InteractiveRequests, 'park'>): (then: () => void) => void {
  return (then) => {
    interactive?.park(res);
    let told = false;
    // Once: a pipelined response may hear of the same end from its connection and then from itself.
    const gone = () => {
      if (told || res.writableFinished) return;
      told = true;
      then();
    };
    if (res.destroyed || req.socket.destroyed) {
      gone();
      return;
    }
    res.once('close', gone);
    if (!res.socket) {
      const forget = connectionGone(req.socket, gone);
      res.once('close', forget);
    }
  };
}

/** Callbacks waiting for a connection to close, one 'close' listener a connection however many wait. */
const connectionWaiters = new WeakMap<Socket, Set<() => void>>();

/** Run `then` when `socket` closes; returns the undo. */
function connectionGone(socket: Socket, then: () => void): () => void {
  let waiting = connectionWaiters.get(socket);
  if (!waiting) {
    const set = (waiting = new Set());
    connectionWaiters.set(socket, set);
    socket.once('close', () => {
      connectionWaiters.delete(socket);
      for (const f of set) f();
    });
  }
  waiting.add(then);
  return () => waiting.delete(then);
}

export function parseCreateJob(body: unknown): CreateJobBody {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    // Valid JSON of the wrong shape: invalid_input, as the OpenAPI document says; invalid_json is for bytes that do not parse.
    throw badRequest('invalid_input', 'The body must be a JSON object');
  }
  const parsed = CreateJobBody.safeParse(body);
  if (!parsed.success) throw badRequest('invalid_input', firstIssue(parsed.error, 'body'));
  return parsed.data;
}

/** `Idempotency-Key` (IDEMPOTENCY_KEY_RE). */
function idempotencyKeyOf(req: IncomingMessage): string | undefined {
  const key = req.headers['idempotency-key'];
  if (key === undefined) return undefined;
  if (typeof key !== 'string' || !IDEMPOTENCY_KEY_RE.test(key)) {
    throw badRequest('invalid_input', 'Idempotency-Key must be 1-255 visible ASCII characters');
  }
  return key;
}

/** Send a Job's JSON text as it is: it was printed once, from the stored record. */
function sendJob(res: ServerResponse, status: number, job: RenderedJob, headers: Record<string, string> = {}): Promise<void> | void {
  if (typeof job.json !== 'string') return sendJobPieces(res, status, job.json.pieces, headers);
  res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(job.json) });
  res.end(job.json);
}

/**
 * A Job with large outputs, chunked (and gzip-compressed when the client
 * takes it): each piece printed as it is taken and written, then the event
 * loop's other work before the next (or the socket's drain, when its
 * buffer is full), so that printing tens of MB of output never holds every
 * other request up for seconds. A piece that throws once the status is
 * sent ends the connection: the client sees a broken answer, never a short
 * one that parses.
 */
async function sendJobPieces(res: ServerResponse, status: number, pieces: Iterable<string>, headers: Record<string, string>): Promise<void> {
  const coding = answerCoding(res.req.headers['accept-encoding']);
  res.writeHead(status, { ...headers, ...codingHeaders(coding), 'content-type': 'application/json; charset=utf-8' });
  try {
    await sendPieces(res, pieces, coding);
  } catch (err) {
    res.destroy(err as Error);
  }
}

/** `Preference-Applied: wait=N`, N the seconds waited for at most: rounded up, so a wait of 0.4 s is not "wait=0". */
const waitApplied = (waitMs: number | undefined): Record<string, string> =>
  waitMs === undefined ? {} : { 'preference-applied': `wait=${Math.ceil(waitMs / 1000)}` };

/** What the three job routes do, on Node's own request and response: the same code behind both ways in (below). */
export class JobHandlers {
  constructor(
    private readonly service: JobService,
    private readonly options: JobRoutesOptions,
  ) {}

  async submit(req: IncomingMessage, res: ServerResponse, tenant: string, body: unknown, lifted?: LiftedBody, trace?: Context): Promise<void> {
    const parsed = parseCreateJob(body);
    if (lifted) {
      // Inputs whose base64 was decoded from the body's bytes: the decoded bytes stand in for the text,
      // and a placeholder anywhere else (in metadata) gets its text back.
      for (const value of Object.values(parsed.input)) {
        if (typeof value === 'object' && value !== null && 'b64' in value) (value as { b64: unknown }).b64 = liftedBytes(value.b64, lifted);
      }
      restorePlaceholders(parsed, lifted);
      lifted.releaseBody();
    }
    const waitMs = preferWaitMs(req.headers.prefer, this.options.maxWaitMs);
    const job = await this.service.submit(tenant, parsed, {
      waitMs,
      cancelAfterMs: cancelAfterMs(req.headers['cancel-after']),
      onGone: waitMs ? clientGone(req, res, this.options.interactive) : undefined,
      idempotencyKey: idempotencyKeyOf(req),
      trace,
    });
    const headers: Record<string, string> = { location: `/v1/jobs/${job.id}`, ...waitApplied(waitMs) };
    if (job.replayed) headers['idempotent-replayed'] = 'true';
    // A replay answers 200 with the first job, whatever its status.
    const sent = sendJob(res, job.ended || job.replayed ? 200 : 202, job, headers);
    if (sent) await sent; // only a piecewise answer is awaited: the usual one costs no extra turn
  }

  async get(req: IncomingMessage, res: ServerResponse, tenant: string, id: string): Promise<void> {
    const waitMs = preferWaitMs(req.headers.prefer, this.options.maxWaitMs);
    const job = await this.service.get(tenant, id, waitMs, waitMs ? clientGone(req, res, this.options.interactive) : undefined);
    const sent = sendJob(res, 200, job, waitApplied(waitMs));
    if (sent) await sent;
  }

  async cancel(_req: IncomingMessage, res: ServerResponse, tenant: string, id: string): Promise<void> {
    const sent = sendJob(res, 200, await this.service.cancel(tenant, id));
    if (sent) await sent;
  }
}

/**
 * The job routes as Express routes, behind the /v1 guard like every other
 * route. They serve what the dispatch below leaves to Express: ids that are
 * not plain id characters (percent-encoded, too long), which Express
 * decodes (and answers 400 when their percent-encoding is malformed).
 */
export function mountJobRoutes(app: Express, handlers: JobHandlers, guard: RequestHandler[], maxBodyBytes: number, tracing?: Tracing, interactive?: InteractiveRequests): void {
  const id = (req: Request) => String(req.params.id);
  // The request's SERVER span (traceExpressRequests) is the active context here: the jobs' traces start under it.
  const trace = tracing?.enabled ? () => tracing.bullmq!.contextManager.active() : () => undefined;
  // Counted as interactive work once the request is whole (a submit: after its body), as the dispatch does.
  const track: RequestHandler[] = interactive ? [interactive.track] : [];
  app.post('/v1/jobs', ...guard, jsonBody(maxBodyBytes), ...track, (req, res) => handlers.submit(req, res, tenantOf(req), req.body, req.liftedBase64, trace()));
  app.get('/v1/jobs/:id', ...track, ...guard, (req, res) => handlers.get(req, res, tenantOf(req), id(req)));
  app.post('/v1/jobs/:id/cancel', ...track, ...guard, (req, res) => handlers.cancel(req, res, tenantOf(req), id(req)));
}

export interface JobDispatchDeps {
  handlers: JobHandlers;
  /** API key digest → tenant (Config.apiKeyDigests). */
  apiKeyDigests: ReadonlyMap<string, string>;
  rateLimiter: SharedRateLimiter;
  rateLimitPerSecond: number;
  interactive: InteractiveRequests;
  metrics: GatewayMetrics;
  logger: Logger;
  maxBodyBytes: number;
  /** When enabled, each job route's request is a SERVER span (POST /v1/jobs: its jobs' traces start there). */
  tracing?: Tracing;
}

/** A job id as it may appear in a path: the characters of a job id, and no more than a few times its length. */
const ID_SEGMENT = /^[A-Za-z0-9_-]{1,128}$/;

/**
 * The job routes, served before Express sees the request. Measured on this
 * gateway's POST /v1/jobs, Express's per-request work (its request and
 * response objects, the router's walk over layers, the closures of each
 * `next`) cost ~0.13 ms of CPU a request, more than everything else the
 * route does, for nothing these three routes use. So the server's request
 * listener offers each request to `dispatch` first: a job route is answered
 * here (the same guard, handlers, metrics and problem+json answers as
 * everywhere else); any other request goes on to the Express app.
 */
export function jobDispatch(deps: JobDispatchDeps): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const url = req.url ?? '';
    if (!url.startsWith('/v1/jobs')) return false;
    const query = url.indexOf('?');
    const path = query < 0 ? url : url.slice(0, query);
    let route: string;
    let id = '';
    if (path === '/v1/jobs' || path === '/v1/jobs/') {
      if (req.method !== 'POST') return false;
      route = '/v1/jobs';
    } else {
      const rest = path.slice('/v1/jobs/'.length);
      const slash = rest.indexOf('/');
      id = slash < 0 ? rest : rest.slice(0, slash);
      const tail = slash < 0 ? '' : rest.slice(slash);
      if (!path.startsWith('/v1/jobs/') || !ID_SEGMENT.test(id)) return false;
      if (tail === '' && (req.method === 'GET' || req.method === 'HEAD')) route = '/v1/jobs/:id';
      else if (tail === '/cancel' && req.method === 'POST') route = '/v1/jobs/:id/cancel';
      else return false;
    }
    serve(deps, req, res, route, id);
    return true;
  };
}

function serve(deps: JobDispatchDeps, req: IncomingMessage, res: ServerResponse, route: string, id: string): void {
  deps.metrics.timeRequest(req, res, route);
  // Interactive work from when it has a whole request (a submit: once its body is read; a body that
  // trickles in costs this gateway nothing meanwhile, and must not hold its uploads back).
  if (route !== '/v1/jobs') deps.interactive.count(res);
  const trace = deps.tracing?.enabled ? startRequestSpan(deps.tracing, req, res, route) : undefined;
  const run = async (): Promise<void> => {
    const who = authenticate(req.headers.authorization, deps.apiKeyDigests);
    if (!who) throw unauthorized();
    const limited = overRateLimit(deps.rateLimiter, who.apiKeyDigest, deps.rateLimitPerSecond);
    if (limited) throw limited;
    if (route === '/v1/jobs') {
      const { value, lifted } = await readJsonBody(req, deps.maxBodyBytes);
      deps.interactive.count(res);
      return deps.handlers.submit(req, res, who.tenant, value, lifted, trace);
    }
    if (route === '/v1/jobs/:id') return deps.handlers.get(req, res, who.tenant, id);
    return deps.handlers.cancel(req, res, who.tenant, id);
  };
  run().catch((err: unknown) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const answer = problemAnswer(err, deps.logger, deps.maxBodyBytes, { method: req.method, path: route });
    deps.metrics.problem(answer.code);
    res.writeHead(answer.status, { ...answer.headers, 'content-length': Buffer.byteLength(answer.body), ...(mustClose(req, answer.status) ? { connection: 'close' } : {}) });
    res.end(answer.body);
  });
}

