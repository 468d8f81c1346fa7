import { badRequest } from '@infer/errors';

/** The longest `Cancel-After` honoured: a deadline past it is refused, not silently cut. */
export const MAX_CANCEL_AFTER_MS = 24 * 3600 * 1000;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * `Cancel-After` (Replicate's header): a duration such as `30s`, `5m`,
 * `1h`, `1h30m` or `250ms`, up to 24 h. Returns whole milliseconds (rounded
 * up), or undefined when the header is absent; anything else is a 400
 * `invalid_input`.
 */
export function cancelAfterMs(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const text = Array.isArray(header) ? header.join(',') : header;
  const trimmed = text.trim();
  if (!/^(\d{1,9}(?:\.\d{1,3})?(?:ms|s|m|h))+$/.test(trimmed)) {
    throw badRequest('invalid_input', 'Cancel-After must be a duration such as 30s, 5m, 1h or 1h30m');
  }
  let ms = 0;
  for (const [, n, unit] of trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(n) * UNIT_MS[unit!]!;
  if (ms <= 0 || ms > MAX_CANCEL_AFTER_MS) throw badRequest('invalid_input', 'Cancel-After must be more than 0 and at most 24h');
  // Whole milliseconds, rounded up: a duration of less than one (0.4ms) is still more than 0, not a deadline already past.
  return Math.ceil(ms);
}
