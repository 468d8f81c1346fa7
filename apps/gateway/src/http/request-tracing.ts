import type { IncomingMessage, ServerResponse } from 'node:http';
import { SpanKind, SpanStatusCode, trace, type Context } from '@opentelemetry/api';
import type { RequestHandler } from 'express';
import { contextOfTraceparent, type Tracing } from '@infer/tracing';
import { captureRoute, routeLabel } from './route-label.js';

/**
 * The SERVER span of one request, ended when its answer is sent, and the
 * context to make its children under. A client's own `traceparent` header
 * makes it that trace's child (W3C trace context). Call only when tracing.
 */
export function startRequestSpan(tracing: Tracing, req: IncomingMessage, res: ServerResponse, route: string | (() => string)): Context {
  const header = req.headers.traceparent;
  const parent = contextOfTraceparent(typeof header === 'string' ? header : undefined);
  const method = req.method ?? 'GET';
  const span = tracing.startSpan(typeof route === 'string' ? `${method} ${route}` : method, { kind: SpanKind.SERVER, attributes: { 'http.request.method': method } }, parent);
  res.once('close', () => {
    const pattern = typeof route === 'string' ? route : route();
    span.updateName(`${method} ${pattern}`);
    span.setAttribute('http.route', pattern);
    span.setAttribute('http.response.status_code', res.statusCode);
    if (res.statusCode >= 500 || !res.writableFinished) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  });
  return trace.setSpan(parent, span);
}

/**
 * Express requests (every route but the job routes, which the dispatch
 * traces itself): a SERVER span each, active while the request is handled,
 * so BullMQ's add spans (a batch's chunks) are made under it. Named by
 * route-label.ts's rules, so a span's name is its request's `route` label in
 * the metrics. Mounted only when tracing.
 */
export function traceExpressRequests(tracing: Tracing): RequestHandler {
  const contexts = tracing.bullmq!.contextManager;
  return (req, res, next) => {
    captureRoute(req);
    const ctx = startRequestSpan(tracing, req, res, () => routeLabel(req, res.statusCode));
    contexts.with(ctx, next);
  };
}
