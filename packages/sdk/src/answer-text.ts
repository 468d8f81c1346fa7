/** Where the SDK keeps the text of an answer that holds an integer too long for a double. */
const ANSWER_TEXT = Symbol('infer.answerText');

/** An integer of 16 digits or more, which a double may not hold exactly (past 2^53, 9007199254740992). */
const LONG_INTEGER = /(?<![\d.eE])-?\d{16,}(?![\d.eE])/;
/** A JSON string, escapes and all. */
const JSON_STRING = /"(?:[^"\\]|\\.)*"/g;

/** Whether JSON text holds a number that is a long integer (not digits inside a string): rare, so looked for cheaply first. */
function holdsLongInteger(text: string): boolean {
  return LONG_INTEGER.test(text) && LONG_INTEGER.test(text.replace(JSON_STRING, '""'));
}

/** `parsed`, parsed from `text`, with the text kept for answerText() when it holds a long integer. */
export function keepAnswerText(parsed: unknown, text: string): unknown {
  if (typeof parsed === 'object' && parsed !== null && holdsLongInteger(text)) {
    Object.defineProperty(parsed, ANSWER_TEXT, { value: text, enumerable: false });
  }
  return parsed;
}

/**
 * The JSON text an SDK call's answer (or a batch's results line) was parsed
 * from, when it holds an integer too long for a double (an INT64 or UINT64
 * output past 2^53, which JSON.parse rounds): read such values from it with
 * a parser that keeps integers exact. Undefined for every other answer.
 */
export function answerText(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const text: unknown = (value as { [ANSWER_TEXT]?: unknown })[ANSWER_TEXT];
  return typeof text === 'string' ? text : undefined;
}
