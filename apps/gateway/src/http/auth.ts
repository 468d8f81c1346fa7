import type { Request, RequestHandler } from 'express';
import { unauthorized } from '@infer/errors';

declare module 'express-serve-static-core' {
  interface Request {
    /** The tenant of the request's API key, set by `requireApiKey`. */
    tenant?: string;
    /** The API key itself, for per-key rate limits; never logged. */
    apiKey?: string;
  }
}

/** `Authorization: Bearer <key>` → tenant, or 401. */
export function requireApiKey(keys: ReadonlyMap<string, string>): RequestHandler {
  return (req, _res, next) => {
    const header = req.headers.authorization;
    const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    const tenant = match ? keys.get(match[1]!) : undefined;
    if (!tenant) return next(unauthorized());
    req.tenant = tenant;
    req.apiKey = match![1]!;
    next();
  };
}

export function tenantOf(req: Request): string {
  if (!req.tenant) throw unauthorized();
  return req.tenant;
}
