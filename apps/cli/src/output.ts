import type { Writable } from 'node:stream';
import { answerText } from '@infer/sdk';

/**
 * An answer as JSON, two spaces an indent. One holding an integer too long
 * for a double (an INT64 output past 2^53) is laid out from the answer's own
 * text, so that every digit the gateway sent reaches stdout (and `jq`).
 */
export function printJson(out: Writable, value: unknown): void {
  const text = answerText(value);
  out.write(`${text === undefined ? JSON.stringify(value, null, 2) : indentJsonText(text)}\n`);
}

/**
 * JSON text laid out as `JSON.stringify(value, null, 2)` lays out a value,
 * token by token: numbers (and strings) are copied as they are, never
 * turned into JavaScript values. The text must be JSON.
 */
export function indentJsonText(text: string): string {
  let out = '';
  let depth = 0;
  const newline = () => `\n${'  '.repeat(depth)}`;
  const isSpace = (c: string | undefined) => c === ' ' || c === '\n' || c === '\r' || c === '\t';
  for (let i = 0; i < text.length; ) {
    const c = text[i]!;
    if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      out += text.slice(i, end + 1);
      i = end + 1;
    } else if (isSpace(c)) {
      i++;
    } else if (c === '{' || c === '[') {
      let next = i + 1;
      while (isSpace(text[next])) next++;
      if (text[next] === (c === '{' ? '}' : ']')) {
        out += c + text[next]!;
        i = next + 1;
      } else {
        depth++;
        out += c + newline();
        i++;
      }
    } else if (c === '}' || c === ']') {
      depth--;
      out += newline() + c;
      i++;
    } else if (c === ',') {
      out += `,${newline()}`;
      i++;
    } else if (c === ':') {
      out += ': ';
      i++;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Left-aligned columns, two spaces apart, under a header row. */
export function printTable(out: Writable, header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  out.write(`${[line(header), ...rows.map(line)].join('\n')}\n`);
}
