import { InvalidArgumentError } from 'commander';

/** commander argument parsers: a bad value is a usage error (exit 2) naming the flag. */
export function positiveInt(value: string): number {
  if (!/^[1-9][0-9]*$/.test(value)) throw new InvalidArgumentError('expected a positive integer');
  return Number(value);
}

/** A page size, 1-100 (as the API takes it). */
export function pageLimit(value: string): number {
  const n = positiveInt(value);
  if (n > 100) throw new InvalidArgumentError('expected 1 to 100');
  return n;
}

export function modelVersion(value: string): string {
  positiveInt(value);
  return value;
}

/** A finite number above 0; `what` names it in the error. */
function aboveZero(value: string, what: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`expected ${what} above 0`);
  return n;
}

export function seconds(value: string): number {
  return aboveZero(value, 'a number of seconds');
}

export function positiveNumber(value: string): number {
  return aboveZero(value, 'a number');
}

export function jsonObject(value: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (err) {
    throw new InvalidArgumentError(`not valid JSON (${(err as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new InvalidArgumentError('expected a JSON object');
  }
  // JSON.parse reads 1e400 as Infinity, which no JSON body can carry (the API refuses it, 422).
  if (holdsNonFinite(parsed)) throw new InvalidArgumentError('a number in it is too large for a double (the API refuses it)');
  return parsed as Record<string, unknown>;
}

function holdsNonFinite(value: unknown): boolean {
  if (typeof value === 'number') return !Number.isFinite(value);
  if (typeof value === 'object' && value !== null) return Object.values(value).some(holdsNonFinite);
  return false;
}

/** An Idempotency-Key as the API takes it: 1-255 visible ASCII characters. */
export function idempotencyKey(value: string): string {
  if (!/^[\x21-\x7e]{1,255}$/.test(value)) throw new InvalidArgumentError('expected 1 to 255 visible ASCII characters (no spaces)');
  return value;
}
