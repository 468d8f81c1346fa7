/**
 * One item of a batch as it comes in: an NDJSON line still as text, or an
 * element of a JSON body's `items` already parsed. `label` names it in
 * error messages ("line 12", "items[11]").
 */
export type RawItem =
  | { label: string; text: string }
  | { label: string; value: unknown }
  /** A line over the limit (`tooLong`, in bytes); its text was never kept. */
  | { label: string; tooLong: number };

const NEWLINE = 0x0a;

/**
 * Split a byte stream into NDJSON lines, handing them out a read at a time
 * (an array per chunk of the stream, so a million lines are not a million
 * promises). Reading the next chunk waits for the consumer: while it awaits,
 * nothing more is read and TCP pushes back on the client.
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
  const emit = (out: RawItem[], bytes: Buffer, from: number, to: number) => {
    line++;
    let text = bytes.toString('utf8', from, to);
    if (line === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    if (!isBlank(text)) out.push({ label: `line ${line}`, text });
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
        out.push({ label: `line ${line}`, tooLong: maxLineBytes });
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
    yield [{ label: `line ${line + 1}`, tooLong: maxLineBytes }];
  } else if (carryBytes > 0) {
    const out: RawItem[] = [];
    const whole = Buffer.concat(carry);
    emit(out, whole, 0, whole.length);
    if (out.length > 0) yield out;
  }
}

function isBlank(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d) return false;
  }
  return true;
}
