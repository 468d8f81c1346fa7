import { expect } from 'chai';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * The OpenAPI document served at GET /openapi.json must describe the
 * requests the gateway takes. Its Idempotency-Key parameter is checked here
 * against what POST /v1/jobs really accepts.
 */

interface StringSchema {
  minLength?: number;
  maxLength?: number;
  pattern?: string;
}

/** Whether `value` satisfies the string keywords of a JSON Schema. */
function satisfies(schema: StringSchema, value: string): boolean {
  const length = [...value].length;
  if (schema.minLength !== undefined && length < schema.minLength) return false;
  if (schema.maxLength !== undefined && length > schema.maxLength) return false;
  if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) return false;
  return true;
}

describe('OpenAPI document against the gateway', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p?.close();
  });

  it('the Idempotency-Key parameter schema admits only keys POST /v1/jobs accepts', async () => {
    const doc = (await (await p.api('/openapi.json', { key: null })).json()) as {
      components: { parameters: Record<string, { name: string; schema: StringSchema }> };
    };
    const param = Object.values(doc.components.parameters).find((x) => x.name.toLowerCase() === 'idempotency-key');
    expect(param, 'an Idempotency-Key parameter').to.exist;
    const body = JSON.stringify({ model: 'mlp', version: 1, input: { features: new Array(64).fill(0.25) } });
    const disagreements: string[] = [];
    for (const key of ['k'.repeat(255), 'k'.repeat(256), 'order 1', 'caf\u00e9']) {
      const res = await p.api('/v1/jobs', { method: 'POST', body, headers: { 'idempotency-key': key } });
      await res.arrayBuffer();
      const documented = satisfies(param!.schema, key);
      const accepted = res.status === 202 || res.status === 200;
      if (documented !== accepted) disagreements.push(`${JSON.stringify(key.length > 20 ? `${key[0]}×${key.length}` : key)}: schema ${documented ? 'admits' : 'refuses'} it, gateway answers ${res.status}`);
    }
    expect(disagreements, `schema ${JSON.stringify(param!.schema)}`).to.deep.equal([]);
  });
});
