import { randomBytes } from 'node:crypto';
import { decodeBase64Into } from './base64.js';
import { tensorBuffers } from './buffer-pool.js';

/**
 * Long base64 members decoded straight from a request body's bytes, before
 * JSON.parse. A 3×48×192 FP32 image is a ~150 KB `"b64"` string: made into
 * a JS string, scanned by JSON.parse, checked by a regular expression and
 * decoded by Buffer.from, it cost a gateway ~4 ms of CPU a request. Here it
 * is checked and decoded in one pass over the bytes (decodeBase64Into), and
 * only the rest of the body (a few hundred bytes) becomes text.
 *
 * Each lifted value is replaced in the text by a placeholder string (U+0000,
 * this process's random nonce, its index): JSON.parse leaves it as a short
 * string, and `liftedBytes` turns it back into the decoded bytes. A client
 * cannot forge one (it does not know the nonce), and anything unusual (an
 * escape, a stray character, a short value) is left in the text for the
 * plain path, which also words the errors.
 */
export interface LiftedBody {
  /** The body as text, with placeholders where long base64 values were. */
  text: string;
  /**
   * The decoded bytes, by placeholder index; each in a buffer of its own
   * (aligned for any typed array), from `tensorBuffers`: whoever is done
   * with one hands it back there.
   */
  bytes: Uint8Array[];
  /** The base64 text each placeholder stands for, to put back where a value was not a tensor's (see restorePlaceholders). */
  original: (index: number) => string;
  /**
   * Done with the body: hand its bytes back to `tensorBuffers` (when they
   * came from there), after which `original` may not be called. The
   * decoded `bytes` are not the body's and stay.
   */
  releaseBody: () => void;
}

const KEY = Buffer.from('"b64":"');
/** Values shorter than this are left to JSON.parse: lifting them saves nothing worth the branch. */
const MIN_LIFT = 1024;
const NONCE = randomBytes(6).toString('hex');
/** JSON for U+0000, then the nonce: no base64 text starts with it. */
const PLACEHOLDER = `\\u0000${NONCE}:`;
const PREFIX = `\u0000${NONCE}:`;

export function liftBase64(body: Buffer): LiftedBody {
  const bytes: Uint8Array[] = [];
  const ranges: Array<[number, number]> = [];
  let released = false;
  const original = (i: number) => {
    if (released) throw new Error('liftBase64: the body was released');
    return ranges[i] ? body.toString('latin1', ranges[i][0], ranges[i][1]) : '';
  };
  const releaseBody = () => {
    released = true;
    tensorBuffers.release(body);
  };
  let at = body.length >= MIN_LIFT ? body.indexOf(KEY) : -1;
  if (at === -1) return { text: body.toString('utf8'), bytes, original, releaseBody };
  const parts: string[] = [];
  let copied = 0;
  for (; at !== -1; at = body.indexOf(KEY, at)) {
    const from = at + KEY.length;
    const to = body.indexOf(0x22, from);
    if (to === -1) break;
    at = to;
    const length = to - from;
    if (length < MIN_LIFT || length % 4 !== 0) continue;
    const pad = body[to - 1] === 0x3d ? (body[to - 2] === 0x3d ? 2 : 1) : 0;
    const out = tensorBuffers.acquire((length / 4) * 3 - pad);
    if (!decodeBase64Into(body, from, to, out, 0, out.length)) {
      tensorBuffers.release(out);
      continue;
    }
    parts.push(body.toString('utf8', copied, from), PLACEHOLDER + bytes.length);
    bytes.push(out);
    ranges.push([from, to]);
    copied = to;
  }
  if (bytes.length === 0) return { text: body.toString('utf8'), bytes, original, releaseBody };
  parts.push(body.toString('utf8', copied));
  return { text: parts.join(''), bytes, original, releaseBody };
}

/** The index a placeholder string stands for, or -1. */
function placeholderIndex(value: unknown, lifted: LiftedBody): number {
  if (typeof value !== 'string' || !value.startsWith(PREFIX)) return -1;
  const i = Number(value.slice(PREFIX.length));
  return Number.isInteger(i) && i >= 0 && i < lifted.bytes.length ? i : -1;
}

/** The decoded bytes a placeholder string stands for, or the value itself when it is not one of `lifted`'s. */
export function liftedBytes(value: unknown, lifted: LiftedBody): unknown {
  const i = placeholderIndex(value, lifted);
  return i < 0 ? value : lifted.bytes[i];
}

/**
 * Put the original base64 text back wherever a placeholder is left in the
 * parsed body (a `"b64"` member inside metadata, say): what a client sent
 * outside a tensor is echoed back as it was. Walks the value iteratively.
 */
export function restorePlaceholders(value: unknown, lifted: LiftedBody): void {
  if (lifted.bytes.length === 0) return;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const node = stack.pop();
    if (typeof node !== 'object' || node === null) continue;
    const entries = Array.isArray(node) ? node.entries() : Object.entries(node);
    for (const [k, v] of entries) {
      const i = placeholderIndex(v, lifted);
      if (i >= 0) (node as Record<string | number, unknown>)[k] = lifted.original(i);
      else if (typeof v === 'object' && v !== null && !(v instanceof Uint8Array)) stack.push(v);
    }
  }
}
