/**
 * One item of a batch as it comes in:
 *  - `line`: an NDJSON line, still as bytes (`source[start, end)`, without
 *    its newline), so the common case can be read without making a string;
 *  - `tooLong`: a line over the limit (`limit`, in bytes) whose bytes were never kept;
 *  - `element`: an element of a JSON body's `items`, already parsed.
 * Labels for error messages ("line 12", "items[11]") are made only when an
 * item fails: see `itemLabel`.
 */
export type RawItem =
  | { kind: 'line'; line: number; source: Buffer; start: number; end: number }
  | { kind: 'tooLong'; line: number; limit: number }
  | { kind: 'element'; index: number; value: unknown };

/** How an item is named in its error: as an editor numbers lines, or as the JSON path of the element. */
export function itemLabel(item: RawItem): string {
  return item.kind === 'element' ? `items[${item.index}]` : `line ${item.line}`;
}

/** A line's text, as JSON.parse takes it (a byte order mark opening the body is dropped). */
export function lineText(item: Extract<RawItem, { kind: 'line' }>): string {
  const text = item.source.toString('utf8', item.start, item.end);
  return item.line === 1 && text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

const NEWLINE = 0x0a;

/**
 * Splits a byte stream into NDJSON lines as its pieces arrive: `push` each
 * piece, then `end`. A line's bytes are a view of the piece it came in (or
 * of the pieces it spans, joined), valid as long as that piece is.
 *
 * Lines are numbered from 1 as an editor numbers them; blank lines are
 * skipped but counted. A line longer than `maxLineBytes` is not kept: it is
 * reported as `tooLong` and its bytes are dropped as they arrive, so memory
 * stays bounded by the limit whatever the client sends. What a line holds is
 * measured as JSON.parse gets it: a CRLF line's carriage return and a byte
 * order mark opening the body are not counted.
 */
export class LineSplitter {
  private carry: Buffer[] = [];
  private carryBytes = 0;
  private dropping = false;
  private line = 0;

  constructor(private readonly maxLineBytes: number) {}

  push(data: Buffer): RawItem[] {
    const out: RawItem[] = [];
    let pos = 0;
    while (pos < data.length) {
      const nl = data.indexOf(NEWLINE, pos);
      const end = nl === -1 ? data.length : nl;
      // Room for a carriage return, and on line 1 a byte order mark: emit measures the line without them.
      const uncounted = this.line === 0 ? 4 : 1;
      if (!this.dropping && this.carryBytes + (end - pos) > this.maxLineBytes + uncounted) {
        this.dropping = true;
        this.carry = [];
      }
      if (nl === -1) {
        this.carryBytes += end - pos;
        if (!this.dropping) this.carry.push(data.subarray(pos));
        break;
      }
      if (this.dropping) {
        this.line++;
        out.push({ kind: 'tooLong', line: this.line, limit: this.maxLineBytes });
        this.dropping = false;
      } else if (this.carry.length > 0) {
        this.carry.push(data.subarray(pos, end));
        const whole = Buffer.concat(this.carry);
        this.emit(out, whole, 0, whole.length);
      } else {
        this.emit(out, data, pos, end);
      }
      this.carry = [];
      this.carryBytes = 0;
      pos = nl + 1;
    }
    return out;
  }

  /** The last line, when the stream did not end with a newline. */
  end(): RawItem[] {
    const out: RawItem[] = [];
    if (this.dropping) {
      out.push({ kind: 'tooLong', line: this.line + 1, limit: this.maxLineBytes });
    } else if (this.carryBytes > 0) {
      const whole = Buffer.concat(this.carry);
      this.emit(out, whole, 0, whole.length);
    }
    this.carry = [];
    this.carryBytes = 0;
    this.dropping = false;
    return out;
  }

  private emit(out: RawItem[], bytes: Buffer, start: number, end: number): void {
    this.line++;
    const bom = this.line === 1 && bytes[start] === 0xef && bytes[start + 1] === 0xbb && bytes[start + 2] === 0xbf ? 3 : 0;
    const cr = end > start + bom && bytes[end - 1] === 0x0d ? 1 : 0;
    if (end - cr - (start + bom) > this.maxLineBytes) out.push({ kind: 'tooLong', line: this.line, limit: this.maxLineBytes });
    else if (!isBlank(bytes, start + bom, end)) out.push({ kind: 'line', line: this.line, source: bytes, start, end });
  }
}

/**
 * The lines of a byte stream, handed out a read at a time (an array per
 * piece, so a million lines are not a million promises). Reading the next
 * piece waits for the consumer: while it awaits, nothing more is read and
 * TCP pushes back on the client. A line's bytes are valid until the
 * consumer asks for the next array.
 */
export async function* ndjsonLines(source: AsyncIterable<Buffer | string>, maxLineBytes: number): AsyncGenerator<RawItem[]> {
  const splitter = new LineSplitter(maxLineBytes);
  for await (const piece of source) {
    const out = splitter.push(typeof piece === 'string' ? Buffer.from(piece) : piece);
    if (out.length > 0) yield out;
  }
  const last = splitter.end();
  if (last.length > 0) yield last;
}

/** Only spaces, tabs and carriage returns (a CRLF file's line ends in one). */
function isBlank(bytes: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = bytes[i]!;
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d) return false;
  }
  return true;
}
