import { expect } from 'chai';
import { DEPTH_ALLOWANCE_FIELD, interactiveKeys, newJobId, queueTag, type EnvelopeJob } from '@infer/contract';
import type { ModelVersion } from '@infer/models';
import { decodeInput } from '@infer/tensors';
import { useLimitsRig } from './helpers/limits.js';
import { seededFloats } from './helpers/ort-reference.js';

/**
 * MAX_QUEUE_DEPTH accepts any positive safe integer (config: positiveInt, up to 2^53 − 1), e.g. a
 * huge value set to "turn the limit off". Allowances are stored "<instances> <limit>" and read back
 * with '^(%d+) (%d+)$' by ENQUEUE; RECLAIM_ALLOWANCE wrote `(allowed - take) .. ' ' .. under`, and
 * Lua 5.1 prints a number with %.14g: from 1e14 up, "5e+14", which no script reads as digits. It
 * writes them with %d now.
 */
describe('limits: MAX_QUEUE_DEPTH of 1e15 (a limit set out of the way)', function () {
  this.timeout(30_000);
  const rig = useLimitsRig('rv-large');

  it('an allowance taken back by RECLAIM_ALLOWANCE is still stored as digits that ENQUEUE reads', async () => {
    const limit = 1e15;
    const w = rig().writer({ maxQueueDepth: limit }, ['1', '2']);
    expect(await rig().burst(w, '1', 1)).to.equal(1);
    expect(await rig().burst(w, '2', 1)).to.equal(1);
    // A version that appears afterwards (a new one rolled out): the pool is spent, so room comes back from version 1.
    const v3: ModelVersion = { ...rig().repo.resolve('mlp', '1'), version: '3' };
    const job: EnvelopeJob = { id: newJobId(queueTag('mlp', '3')), tenant: 't', created_at: Date.now() };
    await w.add(v3, job, [decodeInput(Array.from(seededFloats(64, 7)), v3.inputs[0]!)]);
    const stored = await rig().connection().hget(interactiveKeys(rig().prefix, 'mlp', '1').meta, DEPTH_ALLOWANCE_FIELD);
    expect(stored, 'version 1’s allowance after a reclaim').to.match(/^\d+ \d+$/);
  });
});
