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

/** `Authorization: Bearer <key>` → the key and its tenant, or undefined for a missing or unknown key. */
export function authenticate(header: string | undefined, keys: ReadonlyMap<string, string>): { tenant: string; apiKey: string } | undefined {
  const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  const tenant = match ? keys.get(match[1]!) : undefined;
  return tenant ? { tenant, apiKey: match![1]! } : undefined;
}

/** `Authorization: Bearer <key>` → tenant, or 401. */
export function requireApiKey(keys: ReadonlyMap<string, string>): RequestHandler {
  return (req, _res, next) => {
    const who = authenticate(req.headers.authorization, keys);
    if (!who) return next(unauthorized());
    req.tenant = who.tenant;
    req.apiKey = who.apiKey;
    next();
  };
}

export function tenantOf(req: Request): string {
  if (!req.tenant) throw unauthorized();
  return req.tenant;
}
