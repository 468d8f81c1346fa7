/**
 * Standard, padded base64 (RFC 4648 §4), decoded from bytes into bytes.
 *
 * `Buffer.from(s, 'base64')` needs a JS string and accepts anything (it skips
 * characters outside the alphabet and takes the URL-safe one too), so a
 * strict decode there costs a string, a regular expression and a copy. The
 * batch line reader has the base64 text as bytes of the request body and a
 * destination slot in a chunk's packed tensor: this decodes and validates in
 * one pass, with no string and no copy.
 */

/** Byte → 6-bit value, or 0xff for a byte outside the standard alphabet. */
const SEXTET = new Uint8Array(256).fill(0xff);
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
for (let i = 0; i < ALPHABET.length; i++) SEXTET[ALPHABET.charCodeAt(i)] = i;
const PAD = 0x3d; // '='

/**
 * Decode `src[from, to)` into `dest` at `at`, when it is standard padded
 * base64 of exactly `want` bytes; returns false (having written some of
 * `dest` perhaps) for anything else: a length that is not a multiple of 4,
 * a character outside the alphabet, padding anywhere but the end, or another
 * decoded length. Leftover bits of the last group are ignored, as Node does.
 */
export function decodeBase64Into(src: Uint8Array, from: number, to: number, dest: Uint8Array, at: number, want: number): boolean {
  const length = to - from;
  if (length % 4 !== 0) return false;
  let pad = 0;
  if (length > 0 && src[to - 1] === PAD) pad = src[to - 2] === PAD ? 2 : 1;
  if ((length / 4) * 3 - pad !== want || at + want > dest.length) return false;
  let o = at;
  const whole = pad ? to - 4 : to;
  for (let i = from; i < whole; i += 4) {
    const a = SEXTET[src[i]!]!;
    const b = SEXTET[src[i + 1]!]!;
    const c = SEXTET[src[i + 2]!]!;
    const d = SEXTET[src[i + 3]!]!;
    // Any 0xff (not in the alphabet, '=' included) sets bit 6 or 7.
    if ((a | b | c | d) & 0xc0) return false;
    const n = (a << 18) | (b << 12) | (c << 6) | d;
    dest[o++] = n >>> 16;
    dest[o++] = (n >>> 8) & 0xff;
    dest[o++] = n & 0xff;
  }
  if (pad) {
    const a = SEXTET[src[whole]!]!;
    const b = SEXTET[src[whole + 1]!]!;
    const c = pad === 1 ? SEXTET[src[whole + 2]!]! : 0;
    if ((a | b | c) & 0xc0) return false;
    const n = (a << 18) | (b << 12) | (c << 6);
    dest[o++] = n >>> 16;
    if (pad === 1) dest[o++] = (n >>> 8) & 0xff;
  }
  return true;
}
