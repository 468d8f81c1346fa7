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
 * Split a byte stream into NDJSON lines, handing them out a read at a time
 * (an array per chunk of the stream, so a million lines are not a million
 * promises). Reading the next chunk waits for the consumer: while it awaits,
 * nothing more is read and TCP pushes back on the client. A line's bytes are
 * a view of the read they came in (or of the reads it spans, joined), valid
 * until the consumer asks for the next array.
 *
 * Lines are numbered from 1 as an editor numbers them; blank lines are
 * skipped but counted. A line longer than `maxLineBytes` is not kept: it is
 * reported as `tooLong` and its bytes are dropped as they arrive, so memory
 * stays bounded by the limit whatever the client sends.
 */
export async function* ndjsonLines(source: AsyncIterable<Buffer | string>, maxLineBytes: number): AsyncGenerator<RawItem[]> {
  let carry: Buffer[] = [];
  let carryBytes = 0;
  let dropping = false;
  let line = 0;
  const emit = (out: RawItem[], bytes: Buffer, start: number, end: number) => {
    line++;
    const bom = line === 1 && bytes[start] === 0xef && bytes[start + 1] === 0xbb && bytes[start + 2] === 0xbf ? 3 : 0;
    if (!isBlank(bytes, start + bom, end)) out.push({ kind: 'line', line, source: bytes, start, end });
  };
  for await (const piece of source) {
    const data = typeof piece === 'string' ? Buffer.from(piece) : piece;
    const out: RawItem[] = [];
    let pos = 0;
    while (pos < data.length) {
      const nl = data.indexOf(NEWLINE, pos);
      const end = nl === -1 ? data.length : nl;
      if (!dropping && carryBytes + (end - pos) > maxLineBytes) {
        dropping = true;
        carry = [];
      }
      if (nl === -1) {
        carryBytes += end - pos;
        if (!dropping) carry.push(data.subarray(pos));
        break;
      }
      if (dropping) {
        line++;
        out.push({ kind: 'tooLong', line, limit: maxLineBytes });
        dropping = false;
      } else if (carry.length > 0) {
        carry.push(data.subarray(pos, end));
        const whole = Buffer.concat(carry);
        emit(out, whole, 0, whole.length);
      } else {
        emit(out, data, pos, end);
      }
      carry = [];
      carryBytes = 0;
      pos = nl + 1;
    }
    if (out.length > 0) yield out;
  }
  // A last line without a final newline.
  if (dropping) {
    yield [{ kind: 'tooLong', line: line + 1, limit: maxLineBytes }];
  } else if (carryBytes > 0) {
    const out: RawItem[] = [];
    const whole = Buffer.concat(carry);
    emit(out, whole, 0, whole.length);
    if (out.length > 0) yield out;
  }
}

/** Only spaces, tabs and carriage returns (a CRLF file's line ends in one). */
function isBlank(bytes: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = bytes[i]!;
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d) return false;
  }
  return true;
}
