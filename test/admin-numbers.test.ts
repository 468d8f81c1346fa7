import { expect } from 'chai';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * docs/api.md: a JSON number too large for a double (`1e400`) is still a
 * number, of the right JSON type, with a value out of range. The contract
 * sorts such bodies by rule, not by type:
 *
 * - routing ("PUT /v1/models/{name}/routing"): "Weights are integers from 0
 *   to 100 … Anything else is 422 invalid_routing. A body that is not
 *   {"weights": …} … is 400 invalid_input"; the error table: `invalid_routing`
 *   422 for "routing weights that are not integers from 0 to 100";
 * - rollouts: "a body of the wrong shape is 400 invalid_input: not a JSON
 *   object, a field missing or of the wrong type, an unknown field. Values
 *   that break a rule are 422 invalid_input: out of range"; `step_seconds` is
 *   "more than 0, at most 86400".
 *
 * (The same holds for job metadata, where the docs say so outright: "1e400 is
 * a 422".) JSON.parse reads 1e400 as Infinity, which zod's z.number()
 * refuses as the wrong type: the routes' shape checks take any JSON number,
 * while the published schemas (the OpenAPI document) still say `number`.
 */
describe('admin bodies with a number too large for a double', function () {
  this.timeout(30_000);
  const ADMIN = 'admin-secret-1';
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ env: { ADMIN_API_KEYS: `ops:${ADMIN}` } });
  });
  after(async () => {
    await p?.close();
  });

  const send = async (method: string, path: string, body: string) => {
    const res = await p.api(path, { method, key: ADMIN, body });
    const text = await res.text();
    return { status: res.status, type: res.headers.get('content-type')?.split(';')[0], code: (JSON.parse(text) as { code?: string }).code, text };
  };

  it('a routing weight of 1e400 is 422 invalid_routing (not an integer from 0 to 100), like a weight of 100.5', async () => {
    const control = await send('PUT', '/v1/models/mlp/routing', '{"weights": {"2": 100.5}}');
    expect({ status: control.status, code: control.code }, control.text).to.deep.equal({ status: 422, code: 'invalid_routing' });
    const huge = await send('PUT', '/v1/models/mlp/routing', '{"weights": {"2": 1e400}}');
    expect({ status: huge.status, type: huge.type, code: huge.code }, huge.text).to.deep.equal({ status: 422, type: 'application/problem+json', code: 'invalid_routing' });
  });

  it('a rollout with step_seconds 1e400 is 422 invalid_input (out of range), like step_seconds 1e6', async () => {
    const control = await send('POST', '/v1/models/mlp/rollouts', '{"version": "1", "steps": [50, 100], "step_seconds": 1e6}');
    expect({ status: control.status, code: control.code }, control.text).to.deep.equal({ status: 422, code: 'invalid_input' });
    const huge = await send('POST', '/v1/models/mlp/rollouts', '{"version": "1", "steps": [50, 100], "step_seconds": 1e400}');
    expect({ status: huge.status, type: huge.type, code: huge.code }, huge.text).to.deep.equal({ status: 422, type: 'application/problem+json', code: 'invalid_input' });
  });

  it('the OpenAPI document still says a routing weight is a number', async () => {
    const res = await fetch(`${p.baseUrl}/openapi.json`);
    expect(res.status).to.equal(200);
    const doc = (await res.json()) as { components: { schemas: Record<string, { properties: { weights: { anyOf: Array<{ type: string; additionalProperties?: { type?: string } }> } } }> } };
    const asObject = doc.components.schemas.SetRoutingBody!.properties.weights.anyOf.find((x) => x.type === 'object')!;
    expect(asObject.additionalProperties, JSON.stringify(asObject)).to.have.property('type').that.is.oneOf(['number', 'integer']);
  });
});
