import type { Request, RequestHandler } from 'express';
import { apiKeyDigest } from '@infer/config';
import { unauthorized } from '@infer/errors';

declare module 'express-serve-static-core' {
  interface Request {
    /** The tenant of the request's API key, set by `requireApiKey`. */
    tenant?: string;
    /** The digest of the request's API key (see apiKeyDigest): what per-key rate limits count by. */
    apiKeyDigest?: string;
  }
}

/** The key of an `Authorization: Bearer <key>` header, or undefined for none (or another scheme). */
export function bearerToken(header: string | undefined): string | undefined {
  return header ? /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] : undefined;
}

/**
 * `Authorization: Bearer <key>` → its tenant and the key's digest, or
 * undefined for a missing or unknown key. The key is hashed and its digest
 * looked up: nothing here compares the bytes of a secret, so how long the
 * lookup takes says nothing about how much of a guessed key is right.
 */
export function authenticate(header: string | undefined, digests: ReadonlyMap<string, string>): { tenant: string; apiKeyDigest: string } | undefined {
  const key = bearerToken(header);
  if (key === undefined) return undefined;
  const digest = apiKeyDigest(key);
  const tenant = digests.get(digest);
  return tenant ? { tenant, apiKeyDigest: digest } : undefined;
}

/** `Authorization: Bearer <key>` → tenant, or 401. */
export function requireApiKey(digests: ReadonlyMap<string, string>): RequestHandler {
  return (req, _res, next) => {
    const who = authenticate(req.headers.authorization, digests);
    if (!who) return next(unauthorized());
    req.tenant = who.tenant;
    req.apiKeyDigest = who.apiKeyDigest;
    next();
  };
}

export function tenantOf(req: Request): string {
  if (!req.tenant) throw unauthorized();
  return req.tenant;
}
