/**
 * Plain-text tables for bench reports: the first column left-aligned, the
 * others right-aligned, so columns of figures line up for reading and for
 * pasting into docs.
 */
export type Cell = string | number;

export function fmt(value: number, digits = 2): string {
  if (!Number.isFinite(value)) return String(value);
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString('en-US');
  if (Math.abs(value) >= 100) return value.toFixed(Math.min(digits, 1));
  return value.toFixed(digits);
}

export function table(header: readonly string[], rows: readonly (readonly Cell[])[], indent = '  '): string {
  const text = [header, ...rows].map((row) => row.map((c) => (typeof c === 'number' ? fmt(c) : c)));
  const widths = header.map((_, i) => Math.max(...text.map((row) => (row[i] ?? '').length)));
  const line = (row: readonly string[]) =>
    indent +
    row
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  const [head, ...body] = text;
  return [line(head!), indent + widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

export function verdict(ok: boolean): string {
  return ok ? 'PASS' : 'FAIL';
}
