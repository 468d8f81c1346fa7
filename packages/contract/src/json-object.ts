import { z } from 'zod';

const kindOf = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

/**
 * A JSON object whose members the schema does not constrain (a job's
 * `input`, `metadata`), taken as it is. `z.record()` would rebuild it and
 * leave out a `"__proto__"` member (zod guards the objects it builds against
 * prototype pollution), while JSON.parse keeps that member as an ordinary
 * own one: metadata would not come back as it was sent, and an input named
 * `__proto__` would slip past the unknown-input check.
 */
export const jsonObject = () =>
  z.custom<Record<string, unknown>>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), {
    error: (issue) => `Invalid input: expected object, received ${kindOf(issue.input)}`,
  });
