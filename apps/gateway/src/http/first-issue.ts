import type { z } from 'zod';

/**
 * What a 400 says about a body or query string that failed its schema: the
 * first issue, after the path it is about (`items.0.input: …`). An issue
 * about the whole value has no path: then `fallback` names it (`body: …`),
 * or, without one, the issue's message stands alone.
 */
export function firstIssue(error: z.ZodError, fallback?: string): string {
  const issue = error.issues[0];
  if (!issue) return fallback === undefined ? 'invalid' : `${fallback}: invalid`;
  const where = issue.path.length ? issue.path.join('.') : fallback;
  return where === undefined ? issue.message : `${where}: ${issue.message}`;
}
