import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { ModelDescription, ModelEvent, Rollout } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { ModelControl } from '@infer/model-control';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/api.md, POST …/versions/{version}/unload: "a version not loaded nor
 * known to the fleet, or already draining, `404 version_not_found`";
 * docs/rollouts.md: "(one or the other: a second unload is 404)". Each
 * unload is recorded as `version_unloaded` with `state: "draining"`.
 */

const ADMIN = 'admin-races-key';

describe('admin races: two admins unloading the same version at once', function () {
  this.timeout(60_000);
  let p: TestPlatform | undefined;
  let other: Gateway | undefined;

  afterEach(async () => {
    await other?.close();
    other = undefined;
    await p?.close();
    p = undefined;
  });

  it('through two gateways: one unload is 202, the other 404 version_not_found (the version was already draining), and one draining event is recorded', async () => {
    p = await startPlatform({ env: { ADMIN_API_KEYS: `ops:${ADMIN}` } });
    other = await createGateway(p.config, silentLogger);
    const otherUrl = `http://127.0.0.1:${await other.listen(0, '127.0.0.1')}`;
    const describeModel = async (base: string) => (await (await fetch(`${base}/v1/models/mlp`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as ModelDescription;
    await waitUntil(async () => {
      for (const base of [p!.baseUrl, otherUrl]) {
        if ((await describeModel(base)).versions_detail.filter((d) => d.state === 'ready').length !== 2) return false;
      }
      return true;
    }, 20_000, 'mlp 1 and 2 ready on both gateways');

    const unload = (base: string) => fetch(`${base}/v1/models/mlp/versions/1/unload`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    const answers = await Promise.all([unload(p.baseUrl), unload(otherUrl)]);
    const statuses = answers.map((r) => r.status).sort();
    const bodies = await Promise.all(answers.map((r) => r.text()));
    const events = ((await (await fetch(`${p.baseUrl}/v1/models/mlp/events?limit=100`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as { data: ModelEvent[] }).data;
    const draining = events.filter((e) => e.type === 'version_unloaded' && e.data.version === '1' && e.data.state === 'draining');
    expect(draining, 'version_unloaded draining events').to.have.length(1);
    expect(statuses, `answers: ${bodies.join(' | ')}`).to.deep.equal([202, 404]);
  });
});

/**
 * docs/api.md: `from` is "the routing when it started, what a rollback or a
 * cancel returns to"; PUT …/routing answers `200` with "the routing now in
 * effect", and is `409` only "while a rollout of the model runs".
 */
describe('admin races: a rollout started while another admin sets the routing', function () {
  this.timeout(60_000);
  let p: TestPlatform | undefined;
  let redis: Redis | undefined;
  const realStart = ModelControl.prototype.startRollout;

  afterEach(async () => {
    ModelControl.prototype.startRollout = realStart;
    redis?.disconnect();
    redis = undefined;
    await p?.close();
    p = undefined;
  });

  it('a routing set (200) after the rollout route read the routing and before its start was written is neither lost nor left out of `from`: the cancel returns to it', async () => {
    p = await startPlatform({ env: { ADMIN_API_KEYS: `ops:${ADMIN}` } });
    const asAdmin = (pathname: string, method: string, body?: unknown) =>
      fetch(p!.baseUrl + pathname, { method, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    await waitUntil(async () => {
      const m = (await (await asAdmin('/v1/models/mlp', 'GET')).json()) as ModelDescription;
      return m.versions_detail.filter((d) => d.state === 'ready').length === 2;
    }, 20_000, 'mlp 1 and 2 ready');
    expect((await asAdmin('/v1/models/mlp/routing', 'PUT', { weights: { '2': 100 } })).status).to.equal(200);

    // The interleaving under test: the rollout route has read the routing ({"2": 100}); another admin's PUT
    // (through another gateway: the same write) lands before the rollout's own write.
    redis = new Redis(p.config.redisUrl);
    const otherAdmin = new ModelControl(redis, p.prefix);
    let putWritten: boolean | undefined;
    ModelControl.prototype.startRollout = async function (this: ModelControl, ...args: Parameters<ModelControl['startRollout']>) {
      if (putWritten === undefined) putWritten = await otherAdmin.setRouting('mlp', { '1': 50, '2': 50 }, 'other-admin');
      return realStart.apply(this, args);
    };
    const res = await asAdmin('/v1/models/mlp/rollouts', 'POST', { version: '1', steps: [10, 100], step_seconds: 3600 });
    ModelControl.prototype.startRollout = realStart;
    const text = await res.text();
    expect(putWritten, "the other admin's routing was written (its PUT answered 200)").to.equal(true);
    if (res.status === 409) return; // refused because the routing moved: nothing lost, the admin may retry
    expect(res.status, text).to.equal(201);
    const rollout = JSON.parse(text) as Rollout;
    const canceled = await asAdmin(`/v1/models/mlp/rollouts/${rollout.id}/cancel`, 'POST');
    expect(canceled.status).to.equal(200);
    expect({ from: rollout.from.routing, afterCancel: await otherAdmin.routing('mlp') }).to.deep.equal({ from: { '1': 50, '2': 50 }, afterCancel: { '1': 50, '2': 50 } });
  });
});
