import path from 'node:path';
import { expect } from 'chai';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { SHIPPED_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * NAME_RE allows model names such as `constructor` and `toString`. /readyz's
 * `models` must list every model the gateway routes to, whatever its name,
 * and reading it must not touch anything outside the answer.
 */
describe('/readyz lists a model named like an Object.prototype member', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  before(async () => {
    const mlp = path.join(SHIPPED_MODELS, 'mlp');
    repo = tempModelRepo({ constructor: { from: mlp }, toString: { from: mlp }, mlp: { from: mlp } });
    p = await startPlatform({ models: repo.root });
  });
  after(async () => {
    await p?.close();
    repo?.remove();
    // Undo what a broken /readyz may have put on shared built-ins, so that later tests do not see it.
    for (const v of ['1', '2']) {
      Reflect.deleteProperty(Object, v);
      Reflect.deleteProperty(Object.prototype.toString, v);
    }
  });

  it('has `constructor` and `toString` under models, as it has mlp, and leaves Object and Object.prototype.toString alone', async () => {
    const res = await fetch(`${p.baseUrl}/readyz`);
    expect(res.status).to.equal(200);
    const body = (await res.json()) as { models: Record<string, Record<string, { ready: boolean; workers_ready: number }>> };
    expect(Object.keys(body.models).sort()).to.deep.equal(['constructor', 'mlp', 'toString']);
    // Read through a Map: on the parsed object, `.constructor` would type as Object's own.
    const models = new Map(Object.entries(body.models));
    expect(models.get('constructor')?.['1']).to.deep.equal({ ready: true, workers_ready: 1 });
    expect(models.get('toString')?.['2']).to.deep.equal({ ready: true, workers_ready: 1 });
    expect(Object.prototype.hasOwnProperty.call(Object, '1'), 'Object["1"] was written').to.equal(false);
    expect(Object.prototype.hasOwnProperty.call(Object.prototype.toString, '1'), 'Object.prototype.toString["1"] was written').to.equal(false);
  });
});
