/**
 * The SDK's headers, read by the gateway's own parsers: what the caller asked for is what the gateway takes.
 * Cancel-After numbers are rounded up to the millisecond, as the gateway rounds (0.4 ms is more than 0),
 * but only after the float noise is gone: 2.007 * 1000 = 2007.0000000000002, which must not become 2008
 * (docs/sdk.md: a number is "sent to the millisecond"). And answerText is kept only for answers holding an
 * integer too long for a double, not for a long digit run inside a string.
 */
import { expect } from 'chai';
import { InferClient, answerText } from '@infer/sdk';
import { cancelAfterMs } from '../apps/gateway/src/http/cancel-after.js';
import { preferWaitMs } from '../apps/gateway/src/http/prefer.js';

function recordingClient(): { client: InferClient; headers: Headers[] } {
  const headers: Headers[] = [];
  const client = new InferClient({
    baseUrl: 'http://gateway.invalid',
    apiKey: 'k',
    fetch: async (_url, init) => {
      headers.push(new Headers(init?.headers));
      return new Response(JSON.stringify({ id: 'j', object: 'job', status: 'succeeded' }), { status: 200, headers: { 'content-type': 'application/json' } });
    },
  });
  return { client, headers };
}

describe('sdk: Cancel-After and Prefer as the gateway reads them', () => {
  // docs/sdk.md: "A number is seconds (fractions allowed, sent to the millisecond) ... more than 0 and at
  // most 24 h". The gateway takes `0.4ms` as 1 ms on purpose ("a duration of less than one (0.4ms) is still
  // more than 0"); the SDK rounds 0.4 ms to "0ms", which the gateway refuses (400 invalid_input).
  it('cancelAfter: 0.0004 (0.4 ms, more than 0) is sent as a duration the gateway accepts, not "0ms"', async () => {
    const { client, headers } = recordingClient();
    await client.jobs.create({ model: 'mlp', input: { x: [1] } }, { cancelAfter: 0.0004 });
    const sent = headers[0]!.get('cancel-after');
    let accepted: number | undefined;
    let refused: unknown;
    try {
      accepted = cancelAfterMs(sent ?? undefined);
    } catch (err) {
      refused = err;
    }
    expect({ sent, refused: refused === undefined ? null : String(refused) }).to.deep.equal({ sent, refused: null });
    expect(accepted).to.be.above(0);
  });

  // Control: the common forms round-trip to the milliseconds asked for.
  it('cancelAfter numbers and Prefer: wait fractions reach the gateway as the milliseconds asked for (control)', async () => {
    const { client, headers } = recordingClient();
    await client.jobs.create({ model: 'mlp', input: { x: [1] } }, { cancelAfter: 1.5, wait: 2.25 });
    expect(cancelAfterMs(headers[0]!.get('cancel-after')!)).to.equal(1500);
    expect(preferWaitMs(headers[0]!.get('prefer')!, 60_000)).to.equal(2250);
  });
});

describe('sdk: SDK cancelAfter seconds reach the gateway as the milliseconds asked for', () => {
  it('2.007 s, 2.011 s, 4.35 s … (three decimals) are sent as exactly those milliseconds, not one more', async () => {
    const { client, headers } = recordingClient();
    const asked = [2.007, 2.011, 2.015, 4.35, 1.5, 0.0004];
    for (const s of asked) await client.jobs.create({ model: 'mlp', input: { x: [1] } }, { cancelAfter: s });
    const got = headers.map((h) => cancelAfterMs(h.get('cancel-after') ?? undefined));
    expect(got).to.deep.equal([2007, 2011, 2015, 4350, 1500, 1]);
  });
});

describe('sdk: answerText is for answers holding a long integer (docs/sdk.md)', () => {
  // docs/sdk.md: "answerText(job) ... (undefined for an answer with no integer of 16 digits or more)":
  // a 17-digit reference in metadata is a string, not an integer.
  it('is undefined for an answer whose only long digit run is inside a string', async () => {
    const client = new InferClient({
      baseUrl: 'http://gateway.invalid',
      apiKey: 'k',
      fetch: async () =>
        new Response(JSON.stringify({ id: 'j', object: 'job', status: 'succeeded', metadata: { order: '12345678901234567' }, output: { y: [1.5] } }), {
          status: 200,
          headers: { 'content-type': 'application/json' },
        }),
    });
    const job = await client.jobs.get('j');
    expect(answerText(job)).to.equal(undefined);
  });
});
