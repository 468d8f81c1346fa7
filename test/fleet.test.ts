import { expect } from 'chai';
import { Redis } from 'ioredis';
import { FleetView, WorkerHeartbeat } from '@infer/fleet';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';

/** A worker's heartbeat: how gateways know who serves what, and when a worker has left. */
describe('fleet: worker heartbeats', () => {
  let redis: Redis;
  let prefix: string;
  before(() => {
    redis = new Redis(TEST_REDIS_URL);
    prefix = uniquePrefix('fleet');
  });
  after(async () => {
    redis.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  const members = async () => (await new FleetView(redis, prefix).live()).map((w) => w.id);

  it('leaves the fleet on stop, and a beat asked for after the stop (a drain ending during close) does not bring it back', async () => {
    const heartbeat = new WorkerHeartbeat(redis, prefix, 'w1', () => [{ model: 'mlp', version: '2', state: 'ready' }]);
    await heartbeat.start();
    expect(await members()).to.deep.equal(['w1']);
    const inFlight = heartbeat.beat();
    await heartbeat.stop();
    await inFlight;
    await heartbeat.beat();
    await heartbeat.start();
    expect(await members()).to.deep.equal([]);
    expect(await redis.exists(`${prefix}:{fleet}:worker:w1`)).to.equal(0);
  });
});
