/** Placeholder replaced by the generated document; see openapi/ once written. */
export function buildOpenApi(): Record<string, unknown> {
  return { openapi: '3.1.0', info: { title: 'infer', version: '0.1.0' }, paths: {} };
}
