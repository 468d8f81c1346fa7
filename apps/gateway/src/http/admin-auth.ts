import type { RequestHandler } from 'express';
import { apiKeyDigest } from '@infer/config';
import { forbidden, unauthorized } from '@infer/errors';
import { bearerToken } from './auth.js';

declare module 'express-serve-static-core' {
  interface Request {
    /** The admin's name (ADMIN_API_KEYS), set by `requireAdminKey`: the actor an admin action is recorded under. */
    admin?: string;
  }
}

export interface AdminAuthOptions {
  /** Config.adminKeyDigests: admin key digest → admin name. Empty: every admin route answers 403. */
  admins: ReadonlyMap<string, string>;
  /** Config.apiKeyDigests: a tenant's key is told 403 (known, not allowed), not 401. */
  tenants: ReadonlyMap<string, string>;
  /**
   * Also take HTTP Basic credentials (the admin key as the password; or as
   * the user name with an empty password, as `curl -u KEY:` sends it), and
   * challenge a 401 with `WWW-Authenticate: Basic realm="…"`: for pages a
   * person opens in a browser, which has no way to send a Bearer token but
   * asks for Basic credentials when challenged, and then sends them with
   * every request under the same path (the page's own API calls included).
   * Off for API-style admin routes: no browser prompt there.
   */
  basicRealm?: string;
}

/** The key an `Authorization` header carries: Bearer always, Basic when allowed. */
function presentedKey(header: string | undefined, basic: boolean): string | undefined {
  if (!header) return undefined;
  const bearer = bearerToken(header);
  if (bearer !== undefined) return bearer;
  const creds = basic ? /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header) : null;
  if (!creds) return undefined;
  const text = Buffer.from(creds[1]!, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon < 0) return undefined;
  const password = text.slice(colon + 1);
  return password || text.slice(0, colon) || undefined;
}

/**
 * The admin's name when the request carries an admin key (Bearer), else
 * undefined: for routes tenants and admins share (reading a model's state).
 */
export function adminKeyName(options: Pick<AdminAuthOptions, 'admins'>, req: { headers: { authorization?: string | undefined } }): string | undefined {
  const key = presentedKey(req.headers.authorization, false);
  return key === undefined ? undefined : options.admins.get(apiKeyDigest(key));
}

/**
 * Guard for operators' routes (`/admin/…`), mounted in front of a router:
 *
 * ```ts
 * app.use('/admin/queues', requireAdminKey({ admins: config.adminKeyDigests, tenants: config.apiKeyDigests }), dashboard.handler);
 * // handlers read req.admin: the name to record as the actor
 * ```
 *
 * - no ADMIN_API_KEYS configured: 403 `forbidden`, whatever is presented
 *   (the admin surface is off, not merely locked);
 * - no key, or an unknown one: 401 `unauthorized`;
 * - a tenant's API key: 403 `forbidden`;
 * - an admin key: `req.admin` is the admin's name.
 *
 * Keys are looked up by digest, as API keys are (see apiKeyDigest): no
 * comparison runs over a secret's bytes.
 */
export function requireAdminKey(options: AdminAuthOptions): RequestHandler {
  const basic = options.basicRealm !== undefined;
  const challenge = basic ? `Basic realm="${options.basicRealm}", charset="UTF-8"` : undefined;
  return (req, res, next) => {
    if (options.admins.size === 0) return next(forbidden('Admin routes are off on this gateway: no ADMIN_API_KEYS are configured'));
    const key = presentedKey(req.headers.authorization, basic);
    const digest = key === undefined ? undefined : apiKeyDigest(key);
    const admin = digest === undefined ? undefined : options.admins.get(digest);
    if (admin) {
      req.admin = admin;
      return next();
    }
    if (digest !== undefined && options.tenants.has(digest)) return next(forbidden('An API key cannot use admin routes; an admin key (ADMIN_API_KEYS) is required'));
    if (challenge) res.setHeader('www-authenticate', challenge);
    next(unauthorized(basic ? 'An admin key is required: Authorization: Bearer <key>, or Basic with the key as the password' : 'An admin key is required: Authorization: Bearer <key>'));
  };
}
