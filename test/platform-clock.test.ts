import { expect } from 'chai';
import { Redis } from 'ioredis';
import { measureRedisClockOffset, platformClockOffset, platformNow, syncPlatformClock, type RedisTime } from '@infer/contract';
import { TEST_REDIS_URL } from './helpers/platform.js';

/**
 * platformNow: this process's clock plus the offset to Redis's, measured
 * with TIME (test/clock-skew runs whole apps on clocks that are off).
 */

/** A Redis whose clock is `aheadMs` ahead of this process's, answering after `delayMs` (an event loop held, say). */
function fakeRedis(aheadMs: number, delayMs = 0): RedisTime {
  return {
    async time() {
      if (delayMs > 0) {
        const until = performance.now() + delayMs;
        // Busy, as an event loop held by a model run is: the answer is read late.
        while (performance.now() < until);
      }
      const ms = Date.now() + aheadMs;
      return [String(Math.floor(ms / 1000)), String((ms % 1000) * 1000)];
    },
  };
}

describe('platform clock', () => {
  const real = new Redis(TEST_REDIS_URL);
  after(async () => {
    // Leave the process on the real Redis's clock for the tests after this one.
    await syncPlatformClock(real);
    real.disconnect();
  });

  it('reads Redis\'s clock as this process\'s plus the measured offset', async () => {
    expect((await measureRedisClockOffset(fakeRedis(7000))).offsetMs).to.be.within(6990, 7010);
    await syncPlatformClock(fakeRedis(-2500));
    expect(platformClockOffset()).to.be.within(-2510, -2490);
    expect(platformNow() - Date.now()).to.be.within(-2510, -2490);
  });

  it('does not let a reading whose round trip was slow (over 50 ms) replace a good one it agrees with, within its error', async () => {
    await syncPlatformClock(fakeRedis(1000));
    // Read 80 ms late: off by up to 40 ms, it says about 1040.
    await syncPlatformClock(fakeRedis(1000, 80));
    expect(platformClockOffset()).to.be.within(990, 1010);
  });

  it('follows a step of this host\'s clock even when every reading is slow (a worker running models back to back)', async () => {
    await syncPlatformClock(fakeRedis(1000));
    await syncPlatformClock(fakeRedis(4000, 80));
    expect(platformClockOffset()).to.be.within(3990, 4060);
  });

  it('agrees with the real Redis on this host to within a few ms', async () => {
    await syncPlatformClock(real);
    const [s, us] = await real.time();
    expect(Math.abs(Number(s) * 1000 + Number(us) / 1000 - platformNow())).to.be.below(50);
  });
});
