/**
 * RFC 9110 `Retry-After`: delay-seconds or an HTTP-date. Returns seconds, or
 * undefined for anything else (the caller's own backoff then applies).
 */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  // Each of the three HTTP-date forms starts with a day name ("Sun, 06 Nov 1994 08:49:37 GMT"). Date.parse
  // alone would read "1.5" or "-1" as dates in 2001, long past: a retry at once.
  if (!/^[A-Za-z]{3}/.test(trimmed)) return undefined;
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}
