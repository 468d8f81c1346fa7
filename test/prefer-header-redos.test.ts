import { expect } from 'chai';
import { preferWaitMs } from '../apps/gateway/src/http/prefer.js';
import { expectProblem } from './helpers/jobs.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * `Prefer` was parsed with /^\s*wait\s*(?:=…)?\s*(?:;.*)?$/i: two `\s*` side by side around an optional
 * group, so "wait" followed by many spaces and then anything else backtracked quadratically. A header may
 * take almost all of Node's 16 KiB, which makes one request hold the gateway's event loop for ~0.2 s:
 * a handful of requests a second, far under RATE_LIMIT_PER_SECOND, stall every tenant on the gateway.
 * Parsing a request header must be linear in its length (docs/api.md names no limit short of the 16 KiB
 * that Node enforces).
 */
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

describe('security: Prefer header parsing is linear (no ReDoS)', function () {
  this.timeout(60_000);
  let p: TestPlatform;

  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p?.close();
  });

  it('preferWaitMs reads a 60 KB hostile Prefer value at once (a quadratic parse takes seconds)', () => {
    const hostile = `wait${' '.repeat(60_000)}x`;
    preferWaitMs(hostile, 60_000); // warm up the regexp
    const t = performance.now();
    const ms = preferWaitMs(hostile, 60_000);
    const took = performance.now() - t;
    expect(ms, 'not a wait preference').to.equal(undefined);
    // Linear: well under a millisecond; the old pattern took ~2 s. The bound leaves room for a loaded machine.
    expect(took, `parsing took ${took.toFixed(1)} ms`).to.be.below(200);
  });

  it('GET /v1/jobs/{id} with a 15 KB hostile Prefer costs no more than the same bytes in another header', async () => {
    const pad = ' '.repeat(15_000);
    const id = 'aaaaaaaaAAAAAAAAAAAAAAAAAAAAAA';
    const time = async (headers: Record<string, string>) => {
      const t = performance.now();
      await expectProblem(await p.api(`/v1/jobs/${id}`, { headers }), 404, 'job_not_found');
      return performance.now() - t;
    };
    const control: number[] = [];
    const hostile: number[] = [];
    for (let i = 0; i < 5; i++) {
      control.push(await time({ prefer: 'wait', 'x-pad': `a${pad}x` }));
      hostile.push(await time({ prefer: `wait${pad}x` }));
    }
    const extra = median(hostile) - median(control);
    expect(extra, `hostile ${hostile.map((x) => x.toFixed(0)).join('/')} ms, control ${control.map((x) => x.toFixed(0)).join('/')} ms`).to.be.below(50);
  });
});
