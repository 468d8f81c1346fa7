import { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import { CreateBatchBody, CreateBatchQuery, type Batch } from '@infer/contract';
import { AppError, badRequest } from '@infer/errors';
import { tenantOf } from '../http/auth.js';
import { contentCoding, decodedBody, withinTimeLimit } from '../http/content-encoding.js';
import { firstIssue } from '../http/first-issue.js';
import { answerCoding, codingHeaders, sendPieces } from '../http/streamed-answer.js';
import { jsonBody } from '../http/json-body.js';
import type { BatchService } from '../batches/batch-service.js';
import type { RawItem } from '../batches/ndjson-lines.js';
import { pageLimit } from '../http/page-limit.js';

export interface BatchRoutesOptions {
  /** The JSON form's body limit, and the NDJSON form's limit per line. */
  maxBodyBytes: number;
  /** How long an NDJSON upload may take to arrive whole (REQUEST_TIME_LIMIT_MS): then 408 `request_timeout`. */
  uploadTimeLimitMs: number;
}

const NDJSON_TYPES = new Set(['application/x-ndjson', 'application/ndjson', 'application/jsonl', 'application/x-jsonlines', 'application/jsonlines']);

function mediaType(req: Request): 'json' | 'ndjson' | 'other' {
  const raw = req.headers['content-type'];
  if (!raw) return 'json';
  const type = raw.split(';')[0]!.trim().toLowerCase();
  if (NDJSON_TYPES.has(type)) return 'ndjson';
  if (type === 'application/json' || type.endsWith('+json')) return 'json';
  return 'other';
}

export function parseCreateBatch(body: unknown): CreateBatchBody {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('invalid_json', 'The body must be a JSON object');
  const parsed = CreateBatchBody.safeParse(body);
  if (!parsed.success) throw badRequest('invalid_input', firstIssue(parsed.error, 'body'));
  return parsed.data;
}

function parseUploadQuery(query: unknown): CreateBatchQuery {
  const parsed = CreateBatchQuery.safeParse(query);
  if (!parsed.success) throw badRequest('invalid_input', `query string: ${firstIssue(parsed.error, 'query')}`);
  return parsed.data;
}

const ListQuery = z
  .object({
    limit: pageLimit,
    after: z.string().min(1).optional(),
  })
  .strict();

/** The JSON form's items, handed out like NDJSON lines so both forms share one path. */
async function* jsonItems(items: unknown[]): AsyncGenerator<RawItem[]> {
  const step = 1024;
  for (let i = 0; i < items.length; i += step) {
    yield items.slice(i, i + step).map((value, k): RawItem => ({ kind: 'element', index: i + k, value }));
  }
}

function accepted(res: Response, batch: Batch): void {
  res.set('Location', batch.urls.get);
  res.status(202).json(batch);
}

/** `/v1/batches` (docs/api.md "Batches"). */
export function batchRoutes(service: BatchService, options: BatchRoutesOptions): Router {
  const router = Router();
  // The same reader as POST /v1/jobs (Content-Encodings, limits, errors), without lifting "b64" values.
  const json = jsonBody(options.maxBodyBytes, { liftBase64: false });

  // NDJSON: read as a stream, line by line. Anything JSON falls through to the next handler.
  router.post('/', async (req, res, next) => {
    const type = mediaType(req);
    if (type === 'json') return next();
    if (type === 'other') {
      throw new AppError(415, 'unsupported_media_type', 'Send application/json (with "items") or application/x-ndjson (one item a line)');
    }
    // The coding is checked before the query: a 415 says so whatever else is wrong.
    const coding = contentCoding(req.headers['content-encoding']);
    const prepared = service.prepare(parseUploadQuery(req.query));
    // Failed with the body half read (Redis went away mid-upload, too slow): the answer closes the
    // connection (problem-middleware's mustClose), the rest not worth reading.
    accepted(res, await service.submitLines(tenantOf(req), prepared, withinTimeLimit(decodedBody(req, coding), options.uploadTimeLimitMs), options.maxBodyBytes));
  });

  router.post('/', json, async (req, res) => {
    const body = parseCreateBatch(req.body);
    const prepared = service.prepare(body);
    accepted(res, await service.submitItems(tenantOf(req), prepared, jsonItems(body.items)));
  });

  router.get('/', async (req, res) => {
    const parsed = ListQuery.safeParse(req.query);
    if (!parsed.success) throw badRequest('invalid_input', `query string: ${firstIssue(parsed.error, 'query')}`);
    res.json(await service.list(tenantOf(req), parsed.data.limit, parsed.data.after));
  });

  router.get('/:id', async (req, res) => {
    res.json(await service.get(tenantOf(req), req.params.id));
  });

  // Streamed about a MiB of lines at a time, each piece written only when the client has taken the one before;
  // gzip-compressed when the request's Accept-Encoding takes it.
  router.get('/:id/results', async (req, res) => {
    const chunks = await service.results(tenantOf(req), req.params.id);
    const coding = answerCoding(req.headers['accept-encoding']);
    res.status(200).type('application/x-ndjson').set(codingHeaders(coding));
    await sendPieces(res, chunks, coding); // a HEAD (Express runs this route for it) gets the headers alone
  });

  router.post('/:id/cancel', async (req, res) => {
    res.json(await service.cancel(tenantOf(req), req.params.id));
  });

  return router;
}
