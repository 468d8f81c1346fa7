import { isUtf8 } from 'node:buffer';
import { BYTES_PER_ELEMENT, customIdFits, type Datatype } from '@infer/contract';
import { decodeBase64Into, elementCount, firstBadRawValue, type TensorData } from '@infer/tensors';

/**
 * The fast path for one NDJSON line of a batch. It reads the usual shape of
 * an item straight from the line's bytes,
 *
 *     {"custom_id": "…", "input": {"<name>": <tensor>, …}}
 *
 * where each tensor is a nested array of numbers (float inputs) or a
 * `{"datatype", "shape", "b64"}` object, and writes the values into the
 * chunk's packed input at the row's slot: no string for the line, no parsed
 * object, no intermediate array. JSON.parse of a 64-float line costs more
 * than everything else the gateway does for it.
 *
 * It never rejects a line. Anything it does not recognise (an escape in a
 * string, another key, a duplicate key, a shape that does not fit, a value
 * that is not finite…) makes `scan` answer `undefined`, and the caller takes
 * the general path: JSON.parse and the validation `POST /v1/jobs` uses,
 * which accepts or rejects the line and words the error. So this reader only
 * has to be right about what it accepts: a subset of the valid lines, with
 * exactly the values JSON.parse gives (see `readNumber`).
 */

/** Where one model input's values go: a fixed-shape slot per row of the chunk's packed tensor. */
export interface ScanTarget {
  /** The input's name, as the UTF-8 bytes of a JSON key. */
  key: Uint8Array;
  datatype: Exclude<Datatype, 'BYTES'>;
  shape: readonly number[];
  /** Elements per row. */
  per: number;
  data: TensorData;
  /** `data`'s bytes, for b64. */
  bytes: Uint8Array;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

const ascii = (s: string) => Buffer.from(s, 'latin1');
const CUSTOM_ID = ascii('custom_id');
const INPUT = ascii('input');
const DATATYPE = ascii('datatype');
const SHAPE = ascii('shape');
const B64 = ascii('b64');

/** Powers of ten a double holds exactly (10^22 is the last). */
const EXACT_POW10 = Array.from({ length: 23 }, (_, i) => Number(`1e${i}`));
const TWO_53 = 2 ** 53;
const DOUBLE_EPSILON = 2 ** -52;

/** Marks "not handled here" from a reader that otherwise answers a number. */
const NO = -1;
/** nextMember: the object has ended. */
const END = -2;

export class LineScanner {
  private b: Buffer = Buffer.alloc(0);
  private i = 0;
  private end = 0;
  private readonly seen: boolean[];

  constructor(private readonly targets: readonly ScanTarget[]) {
    this.seen = targets.map(() => false);
  }

  /**
   * Read the item in `bytes[start, end)` and pack its inputs at `row`.
   * Answers the item's custom id (null when it has none), or `undefined`
   * when the line is not one the fast path handles; the row's slot may
   * then hold some of its values, which the general path overwrites.
   */
  scan(bytes: Buffer, start: number, end: number, row: number): string | null | undefined {
    this.b = bytes;
    this.i = start;
    this.end = end;
    let customId: string | null = null;
    let sawId = false;
    let sawInput = false;
    if (this.next() !== OPEN_BRACE) return undefined;
    this.i++;
    for (let first = true; ; first = false) {
      const key = this.nextMember(first);
      if (key === END) break;
      if (key === NO) return undefined;
      if (this.keyIs(key, CUSTOM_ID)) {
        if (sawId || this.b[this.i] !== QUOTE) return undefined;
        sawId = true;
        const from = this.i + 1;
        const to = this.readPlainString();
        if (to < 0) return undefined;
        // Bytes that are not UTF-8 would be decoded with U+FFFD in their place (two ids made one): the
        // general path refuses the line instead.
        if (!isUtf8(this.b.subarray(from, to - 1))) return undefined;
        customId = this.b.toString('utf8', from, to - 1);
        if (!customIdFits(customId)) return undefined;
      } else if (this.keyIs(key, INPUT)) {
        if (sawInput) return undefined;
        sawInput = true;
        if (!this.readInputs(row)) return undefined;
      } else {
        return undefined;
      }
    }
    // Only whitespace after the object (a CRLF line ends in a carriage return).
    if (!sawInput || this.next() !== NO) return undefined;
    return customId;
  }

  /** `{"<name>": tensor, …}` naming every input once. */
  private readInputs(row: number): boolean {
    const seen = this.seen.fill(false);
    if (this.next() !== OPEN_BRACE) return false;
    this.i++;
    let count = 0;
    for (let first = true; ; first = false) {
      const key = this.nextMember(first);
      if (key === END) break;
      if (key === NO) return false;
      const t = this.targetOf(key);
      if (t < 0 || seen[t]) return false;
      seen[t] = true;
      count++;
      const target = this.targets[t]!;
      const at = row * target.per;
      const c = this.b[this.i];
      if (c === OPEN_BRACKET) {
        if (!(target.data instanceof Float32Array || target.data instanceof Float64Array)) return false;
        if (this.readNested(target.data, target.shape, 0, at) !== target.per) return false;
      } else if (c === OPEN_BRACE) {
        if (!this.readB64Tensor(target, at)) return false;
      } else {
        return false;
      }
    }
    return count === this.targets.length;
  }

  /**
   * `[…]` of exactly `shape` from `depth` down, written to `out` from `at`.
   * Answers how many values it wrote, or NO.
   */
  private readNested(out: Float32Array | Float64Array, shape: readonly number[], depth: number, at: number): number {
    if (this.next() !== OPEN_BRACKET) return NO;
    this.i++;
    const n = shape[depth]!;
    const leaf = depth === shape.length - 1;
    let written = 0;
    const float32 = out instanceof Float32Array;
    const b = this.b;
    for (let k = 0; k < n; k++) {
      if (k > 0) {
        // Compact JSON has the comma right here; otherwise skip whitespace first.
        if (b[this.i] === COMMA) this.i++;
        else if (this.next() === COMMA) this.i++;
        else return NO;
      }
      if (leaf) {
        if (isSpace(b[this.i]!)) this.next();
        const v = this.readNumber(float32);
        if (Number.isNaN(v)) return NO;
        out[at + k] = v;
        // Infinity from the text, or a double that overflows FP32.
        if (!Number.isFinite(out[at + k]!)) return NO;
      } else {
        const w = this.readNested(out, shape, depth + 1, at + written);
        if (w < 0) return NO;
        written += w;
      }
    }
    if (this.next() !== CLOSE_BRACKET) return NO;
    this.i++;
    return leaf ? n : written;
  }

  /** `{"datatype": "<the input's>", "shape": <the input's>, "b64": "…"}`, in any order. */
  private readB64Tensor(target: ScanTarget, at: number): boolean {
    this.i++;
    let sawType = false;
    let sawShape = false;
    let sawB64 = false;
    for (let first = true; ; first = false) {
      const key = this.nextMember(first);
      if (key === END) break;
      if (key === NO) return false;
      if (this.keyIs(key, DATATYPE)) {
        if (sawType) return false;
        sawType = true;
        const from = this.i + 1;
        const to = this.readPlainString();
        if (to < 0 || !sameAscii(this.b, from, to - 1, target.datatype)) return false;
      } else if (this.keyIs(key, SHAPE)) {
        if (sawShape || !this.readShape(target.shape)) return false;
        sawShape = true;
      } else if (this.keyIs(key, B64)) {
        if (sawB64 || this.b[this.i] !== QUOTE) return false;
        sawB64 = true;
        // The closing quote by memchr: the decoder refuses every byte outside
        // the base64 alphabet (escapes and control characters included).
        const from = this.i + 1;
        const close = this.b.indexOf(QUOTE, from);
        if (close < 0 || close >= this.end) return false;
        this.i = close + 1;
        const width = BYTES_PER_ELEMENT[target.datatype];
        if (!decodeBase64Into(this.b, from, close, target.bytes, at * width, target.per * width)) return false;
      } else {
        return false;
      }
    }
    return sawType && sawShape && sawB64 && firstBadRawValue(target.data, target.datatype, at, at + target.per) < 0;
  }

  /** `[d0, d1, …]` equal to `shape`. */
  private readShape(shape: readonly number[]): boolean {
    if (this.b[this.i] !== OPEN_BRACKET) return false;
    this.i++;
    for (let k = 0; k < shape.length; k++) {
      if (k > 0) {
        if (this.next() !== COMMA) return false;
        this.i++;
      }
      this.next();
      if (this.readNumber(false) !== shape[k]) return false;
    }
    if (this.next() !== CLOSE_BRACKET) return false;
    this.i++;
    return true;
  }

  /**
   * A JSON number at the cursor (RFC 8259 grammar, strictly: no leading
   * zeros, no bare dot, no plus sign), or NaN.
   *
   * The digits are read as an integer mantissa and a power of ten. While the
   * mantissa is below 2^53 (so every step of reading it was exact) and the
   * power at most 22, both are exact doubles and one multiplication or
   * division rounds correctly (Clinger's fast path): the value is
   * JSON.parse's to the bit.
   *
   * A float32 printed as a double (what most clients send) has 16-17
   * digits, past 2^53. For a `float32` destination the value then only has
   * to round to the same float32 as JSON.parse's double would: the reading
   * is off by at most a few units in the last place of a double, so when
   * both ends of that error interval round to one float32, that float32 is
   * the answer (it almost always is; a value right on a float32 rounding
   * boundary is handed to Number()). Anything else goes to Number() too.
   */
  private readNumber(float32: boolean): number {
    const b = this.b;
    const start = this.i;
    let i = start;
    let c = b[i]!;
    const negative = c === MINUS;
    if (negative) c = b[++i]!;
    // The mantissa's digits go into an int32 nine at a time (a chain of
    // integer steps is several times quicker than one of double steps), and
    // from there into `high`.
    let high = 0;
    let low = 0;
    let lowDigits = 0;
    let digits = 0;
    let exp = 0;
    if (c === ZERO) {
      c = b[++i]!;
    } else if (c > ZERO && c <= NINE) {
      const from = i;
      do {
        low = low * 10 + (c - ZERO);
        if (++lowDigits === 9) {
          high = high * 1e9 + low;
          low = 0;
          lowDigits = 0;
        }
        c = b[++i]!;
      } while (c >= ZERO && c <= NINE);
      digits = i - from;
    } else {
      return NaN;
    }
    if (c === DOT) {
      const point = i;
      c = b[++i]!;
      if (!(c >= ZERO && c <= NINE)) return NaN;
      // Zeros before the first significant digit only move the point.
      if (digits === 0) while (c === ZERO) c = b[++i]!;
      const from = i;
      while (c >= ZERO && c <= NINE) {
        low = low * 10 + (c - ZERO);
        if (++lowDigits === 9) {
          high = high * 1e9 + low;
          low = 0;
          lowDigits = 0;
        }
        c = b[++i]!;
      }
      digits += i - from;
      exp = point + 1 - i;
    }
    const mantissa = high * EXACT_POW10[lowDigits]! + low;
    let hugeExp = false;
    if (c === 0x65 || c === 0x45) {
      c = b[++i]!;
      const negExp = c === MINUS;
      if (negExp || c === PLUS) c = b[++i]!;
      if (!(c >= ZERO && c <= NINE)) return NaN;
      let e = 0;
      do {
        // Past this the value is 0 or Infinity whatever the mantissa: Number() says which.
        if (e < 1e6) e = e * 10 + (c - ZERO);
        else hugeExp = true;
        c = b[++i]!;
      } while (c >= ZERO && c <= NINE);
      exp += negExp ? -e : e;
    }
    if (i > this.end) return NaN;
    this.i = i;
    if (!hugeExp && exp >= -22 && exp <= 22) {
      const v = exp < 0 ? mantissa / EXACT_POW10[-exp]! : mantissa * EXACT_POW10[exp]!;
      if (mantissa < TWO_53) return negative ? -v : v;
      // Each step past 2^53 rounded once (half an ulp), the power once more; leave a margin.
      if (float32 && digits <= 21) {
        const slack = (digits - 15 + 4) * DOUBLE_EPSILON;
        const lo = Math.fround(v * (1 - slack));
        if (lo === Math.fround(v * (1 + slack))) return negative ? -lo : lo;
      }
    }
    return Number(b.toString('latin1', start, i));
  }

  /**
   * In an object, after its `{` or a member: the next member's key (where
   * it ends, as readPlainString answers) with the cursor on its value, END
   * past the closing `}`, or NO. An empty object is NO: no object read here
   * may be empty.
   */
  private nextMember(first: boolean): number {
    const c = this.next();
    if (!first) {
      if (c === CLOSE_BRACE) {
        this.i++;
        return END;
      }
      if (c !== COMMA) return NO;
      this.i++;
      this.next();
    }
    const key = this.readPlainString();
    if (key < 0 || this.next() !== COLON) return NO;
    this.i++;
    this.next();
    return key;
  }

  /**
   * A string at the cursor with no escapes and no control characters: moves
   * past its closing quote and answers that position (its text is
   * `[start + 1, answer - 1)`), or NO.
   */
  private readPlainString(): number {
    const b = this.b;
    let i = this.i;
    if (b[i] !== QUOTE) return NO;
    i++;
    for (;;) {
      if (i >= this.end) return NO;
      const c = b[i]!;
      if (c === QUOTE) break;
      if (c === BACKSLASH || c < 0x20) return NO;
      i++;
    }
    this.i = i + 1;
    return this.i;
  }

  /** Whether the string that ended at `after` (from readPlainString) is `want`. */
  private keyIs(after: number, want: Uint8Array): boolean {
    const from = after - 1 - want.length;
    if (this.b[from - 1] !== QUOTE) return false;
    for (let k = 0; k < want.length; k++) if (this.b[from + k] !== want[k]) return false;
    return true;
  }

  private targetOf(after: number): number {
    for (let t = 0; t < this.targets.length; t++) if (this.keyIs(after, this.targets[t]!.key)) return t;
    return NO;
  }

  /** Skip whitespace; answer the byte at the cursor, or NO at the end of the line. */
  private next(): number {
    const b = this.b;
    let i = this.i;
    while (i < this.end) {
      const c = b[i]!;
      if (c !== 0x20 && c !== 0x09 && c !== 0x0d && c !== 0x0a) {
        this.i = i;
        return c;
      }
      i++;
    }
    this.i = i;
    return NO;
  }
}

const isSpace = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;

function sameAscii(b: Uint8Array, from: number, to: number, s: string): boolean {
  if (to - from !== s.length) return false;
  for (let k = 0; k < s.length; k++) if (b[from + k] !== s.charCodeAt(k)) return false;
  return true;
}

/** A scan target for each input of a model whose inputs all have fixed shapes, over the chunk's packed arrays. */
export function scanTargets(inputs: readonly { name: string; datatype: Exclude<Datatype, 'BYTES'>; shape: readonly number[]; data: TensorData }[]): ScanTarget[] {
  return inputs.map((input) => ({
    key: Buffer.from(input.name, 'utf8'),
    datatype: input.datatype,
    shape: input.shape,
    per: elementCount(input.shape),
    data: input.data,
    bytes: new Uint8Array(input.data.buffer, input.data.byteOffset, input.data.byteLength),
  }));
}
