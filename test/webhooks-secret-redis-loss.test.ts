import { expect } from 'chai';
import { Webhook } from 'standardwebhooks';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';
import { waitUntil } from './helpers/wait.js';
import { startRawReceiver, type RawReceiver } from './helpers/webhook-receiver.js';

/**
 * docs/api.md, GET /v1/webhooks/secret: "the tenant's signing secret …, the
 * same for all its webhooks. Created on first use; it does not change."
 * and "Any Standard Webhooks library verifies it, given the secret from
 * GET /v1/webhooks/secret".
 *
 * Redis may come back without its data (a restart without persistence, a
 * failover to a replica that lagged, an operator's FLUSHDB). A process that
 * kept its own copy of the secret would then serve or sign with one that
 * the processes asking afresh replaced: gateways would disagree, and
 * deliveries stop verifying against what a gateway serves, until every
 * process restarted. Every process reads Redis each time, and one that
 * finds the secret gone offers back the one it last read.
 */
describe('webhooks: the signing secret after Redis comes back without its data', function () {
  this.timeout(60_000);
  let redis: OwnRedis;
  let p: TestPlatform;
  let g2: Gateway | undefined;
  let receiver: RawReceiver;

  before(async () => {
    redis = await OwnRedis.start();
    p = await startPlatform({ redisUrl: redis.url, env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '100' } });
    receiver = await startRawReceiver();
  });
  after(async () => {
    await g2?.close().catch(() => undefined);
    await receiver?.close();
    await p?.close().catch(() => undefined);
    await redis?.stop();
  });

  const secretFrom = async (baseUrl: string): Promise<string> => {
    const res = await fetch(`${baseUrl}/v1/webhooks/secret`, { headers: { authorization: 'Bearer test-key-a' } });
    expect(res.status).to.equal(200);
    return ((await res.json()) as { secret: string }).secret;
  };
  const submit = async () => {
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) }, webhook: receiver.url }) });
    expect(res.status, await res.clone().text()).to.equal(202);
    return ((await res.json()) as { id: string }).id;
  };
  const restartRedisEmpty = async () => {
    await redis.stop();
    await redis.start();
    await waitUntil(async () => (await fetch(`${p.baseUrl}/readyz`)).status === 200, 20_000, '/readyz 200 again');
  };
  /** Whether the delivery of a job submitted now verifies with `secret`. */
  const deliveryVerifiesWith = async (secret: string): Promise<boolean> => {
    const id = await submit();
    const d = await waitUntil(() => receiver.got.find((x) => (JSON.parse(x.body) as { data: { id: string } }).data.id === id), 20_000, 'the delivery');
    try {
      new Webhook(secret).verify(d.body, d.headers);
      return true;
    } catch {
      return false;
    }
  };

  it('a gateway that served the secret before offers it back: every process goes on with it', async () => {
    const before = await secretFrom(p.baseUrl);
    expect(await deliveryVerifiesWith(before)).to.equal(true);
    await restartRedisEmpty();
    const fromFirst = await secretFrom(p.baseUrl);
    // A second gateway (a scale-out, a gateway restarted for a deploy) starts now.
    g2 = await createGateway(p.config, silentLogger, { models: p.gateway.models });
    const fromSecond = await secretFrom(`http://127.0.0.1:${await g2.listen(0, '127.0.0.1')}`);
    expect({ kept: fromFirst === before, agree: fromSecond === fromFirst, verifies: await deliveryVerifiesWith(fromFirst) }).to.deep.equal({ kept: true, agree: true, verifies: true });
  });

  it('one made afresh by a process that never had it is the one every gateway then serves, and deliveries verify with it', async () => {
    const before = await secretFrom(p.baseUrl);
    await restartRedisEmpty();
    // The second gateway asks first: it has read the secret too, but a gateway started now would not have.
    await g2!.close();
    g2 = await createGateway(p.config, silentLogger, { models: p.gateway.models });
    const fromSecond = await secretFrom(`http://127.0.0.1:${await g2.listen(0, '127.0.0.1')}`);
    const fromFirst = await secretFrom(p.baseUrl);
    expect({ new: fromSecond !== before, agree: fromFirst === fromSecond, verifies: await deliveryVerifiesWith(fromFirst) }).to.deep.equal({ new: true, agree: true, verifies: true });
  });
});
