import type { IncomingMessage } from 'node:http';
import { buildOpenApi } from '../openapi.js';

/**
 * The `route` label of a request: the full pattern of the route it was for
 * (`/v1/batches/:id/cancel`), never its path (ids would make a label set
 * without bound), or `unmatched`.
 *
 * Express knows the pattern only in pieces: `req.route.path` is relative to
 * the router it sits in, and `req.baseUrl` is that router's mount path only
 * while the request is inside it; an error passed on with `next(err)` leaves
 * the router, which puts `baseUrl` back to the parent's, so reading the two
 * when the answer is sent labelled a 404 on GET /v1/batches/:id as `/:id`.
 * `captureRoute` reads them at the moment Express matches the route instead.
 */

const PATTERN = Symbol('routePattern');
const CAPTURING = Symbol('capturingRoute');

interface Carrier {
  [PATTERN]?: string;
  [CAPTURING]?: true;
}

/** Join a mount path and a route path, without the trailing slash of a router's root route (`/v1/models/` → `/v1/models`). */
function join(base: string, path: string): string {
  const full = base + path;
  return full.length > 1 && full.endsWith('/') ? full.slice(0, -1) : full;
}

/**
 * Remember the full pattern of the route Express matches for `req` (see
 * above); call before Express routes it. Calling it again (the metrics and
 * the tracing both do) changes nothing.
 */
export function captureRoute(req: IncomingMessage & { baseUrl?: string }): void {
  if (CAPTURING in req) return;
  (req as Carrier)[CAPTURING] = true;
  let route: unknown;
  Object.defineProperty(req, 'route', {
    configurable: true,
    enumerable: true,
    get: () => route,
    set(value: unknown) {
      route = value;
      const path = (value as { path?: unknown } | undefined)?.path;
      // baseUrl is the request's own text of the mount path, which Express matches case-insensitively: every
      // mount path is a lower-case literal, so lower case gives the pattern (and no label per casing sent).
      if (typeof path === 'string') (req as Carrier)[PATTERN] = join((req.baseUrl ?? '').toLowerCase(), path);
    },
  });
}

/** Every documented route, for requests answered before Express matched one (a 401 or 429 from the /v1 guard). */
let known: Array<{ re: RegExp; pattern: string }> | undefined;

function knownRoutes(): Array<{ re: RegExp; pattern: string }> {
  if (!known) {
    // Express's parameter names are the document's, so both ways of labelling agree.
    const templates = Object.keys(buildOpenApi().paths);
    // Fewer parameters first: a literal segment wins over a parameter in the same place.
    templates.sort((a, b) => (a.match(/\{/g)?.length ?? 0) - (b.match(/\{/g)?.length ?? 0));
    known = templates.map((t) => ({
      // Case-insensitive, as Express routes (and documented-routes.ts matches): /V1/Batches/x is /v1/batches/:id.
      re: new RegExp(`^${t.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}/?$`, 'i'),
      pattern: t.replace(/\{([^}]+)\}/g, ':$1'),
    }));
  }
  return known;
}

/**
 * The label of a request answered with `status`: the pattern Express
 * matched; else, unless it is a 404 (no route: `unmatched`), the documented
 * route its path fits, as a request refused by the guard before routing.
 */
export function routeLabel(req: IncomingMessage & { originalUrl?: string }, status: number): string {
  const captured = (req as Carrier)[PATTERN];
  if (captured !== undefined) return captured;
  if (status === 404) return 'unmatched';
  // Inside a router Express strips the mount path from req.url; originalUrl keeps it.
  const url = req.originalUrl ?? req.url ?? '';
  const query = url.indexOf('?');
  const path = query < 0 ? url : url.slice(0, query);
  return knownRoutes().find((r) => r.re.test(path))?.pattern ?? 'unmatched';
}
