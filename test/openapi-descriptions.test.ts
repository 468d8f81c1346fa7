import { expect } from 'chai';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * Where the gateway's answers depend on rules the schema shapes cannot say,
 * the OpenAPI document's descriptions say them, and say what the gateway does.
 */
const ADMIN_KEY = 'openapi-descriptions-admin';
const features = new Array(64).fill(0.5);

interface Doc {
  components: { schemas: Record<string, { description?: string; properties?: Record<string, { description?: string }> }> };
}

describe('the OpenAPI document’s descriptions and the gateway', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let doc: Doc;

  before(async () => {
    p = await startPlatform({ worker: false, env: { ADMIN_API_KEYS: `ops:${ADMIN_KEY}` } });
    doc = (await (await p.api('/openapi.json', { key: null })).json()) as Doc;
  });
  after(async () => {
    await p?.close();
  });

  it('metadata: the numbers and the depth it refuses are in its description', async () => {
    const described = doc.components.schemas.CreateJobBody!.properties!.metadata!.description ?? '';
    const big = await p.api('/v1/jobs', { method: 'POST', body: `{"model":"mlp","input":{"features":[${features.join(',')}]},"metadata":{"big":9007199254740993}}` });
    expect(big.status, await big.clone().text()).to.equal(422);
    await big.arrayBuffer();
    let deep: Record<string, unknown> = { leaf: true };
    for (let i = 0; i < 39; i++) deep = { n: deep };
    const nested = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features }, metadata: deep }) });
    expect(nested.status, await nested.clone().text()).to.equal(422);
    await nested.arrayBuffer();
    expect(described).to.match(/2\^53/).and.to.match(/32 levels/);
  });

  it('CreateRolloutBody: an unknown or missing field is 400, as its description says', async () => {
    const description = doc.components.schemas.CreateRolloutBody!.description ?? '';
    const unknown = await p.api('/v1/models/mlp/rollouts', { method: 'POST', key: ADMIN_KEY, body: JSON.stringify({ version: 1, steps: [100], step_seconds: 60, extra: 1 }) });
    const missing = await p.api('/v1/models/mlp/rollouts', { method: 'POST', key: ADMIN_KEY, body: JSON.stringify({ version: 1, steps: [100] }) });
    await unknown.arrayBuffer();
    await missing.arrayBuffer();
    expect([unknown.status, missing.status]).to.deep.equal([400, 400]);
    expect(description).to.match(/field missing, of the wrong JSON type, or unknown, is 400/);
    expect(description).not.to.match(/unknown fields, a missing field[^.;]*422/);
  });
});
