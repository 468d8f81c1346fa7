import type { JobError } from '@infer/contract';

/** What JSON.stringify escapes in a string: `"`, `\\`, U+0000–U+001F and (when unpaired) surrogates. */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * The lines of `GET /v1/batches/{id}/results`, `{index, custom_id, status,
 * output, error}`, each ending in "\n". Written by string concatenation: a
 * worker renders a few hundred thousand of them a second, and the output map
 * is already JSON (rendered exactly as a job's output is, so a batch and a
 * job give byte-identical outputs for the same input).
 */
export function succeededLine(index: number, customId: string | null, outputJson: string): string {
  return succeededLineHead(index, customId) + outputJson + SUCCEEDED_LINE_TAIL;
}

/** A succeeded line up to its output's value, for a line sent in pieces. */
export function succeededLineHead(index: number, customId: string | null): string {
  return `{"index":${index},"custom_id":${customIdJson(customId)},"status":"succeeded","output":`;
}

/** A succeeded line after its output's value. */
export const SUCCEEDED_LINE_TAIL = ',"error":null}\n';

export function failedLine(index: number, customId: string | null, error: JobError): string {
  return `{"index":${index},"custom_id":${customIdJson(customId)},"status":"failed","output":null,"error":${JSON.stringify({ code: error.code, message: error.message })}}\n`;
}

export function canceledLine(index: number, customId: string | null): string {
  return `{"index":${index},"custom_id":${customIdJson(customId)},"status":"canceled","output":null,"error":null}\n`;
}

/**
 * `JSON.stringify(customId)`. Most ids need no escaping (no quote,
 * backslash, control character or surrogate): one regex test and a quote on
 * each side is cheaper than JSON.stringify, and this runs once per line.
 */
export function customIdJson(customId: string | null): string {
  if (customId === null) return 'null';
  return NEEDS_ESCAPE.test(customId) ? JSON.stringify(customId) : '"' + customId + '"';
}

/**
 * What a chunk's results need besides its outputs: the items it covers,
 * their custom ids, and the items that failed validation at upload. Stored
 * for each chunk not yet ended, so a canceled batch can still list every item.
 */
export interface ChunkManifest {
  start: number;
  count: number;
  custom_ids: (string | null)[];
  failures: { offset: number; error: JobError }[];
}

/** The lines of a chunk that never ran: its invalid items failed, the rest canceled. */
export function unrunChunkLines(m: ChunkManifest): string {
  const failed = new Map(m.failures.map((f) => [f.offset, f.error]));
  let out = '';
  for (let k = 0; k < m.count; k++) {
    const error = failed.get(k);
    const customId = m.custom_ids[k] ?? null;
    out += error ? failedLine(m.start + k, customId, error) : canceledLine(m.start + k, customId);
  }
  return out;
}
