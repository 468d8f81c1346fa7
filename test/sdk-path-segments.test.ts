/**
 * An id or name is one path segment of its route. fetch's URL parser removes
 * `.` and `..` segments (and `%2E` is a dot to it as well), and an empty one
 * names another route: `client.models.get('.')` would GET /v1/models, the
 * list of every model, and resolve with it. No job, batch, event or model is
 * named so; the SDK refuses such an argument with InferArgumentError, before
 * any request.
 */
import { expect } from 'chai';
import { InferArgumentError, InferClient } from '@infer/sdk';

describe('sdk: ids and names that cannot be a path segment', () => {
  it('every call that puts an id or name in the path refuses "", "." and ".." without sending anything', async () => {
    const sent: string[] = [];
    const recording: typeof fetch = async (input) => {
      sent.push(String(input));
      return new Response('{}', { status: 200, headers: { 'content-type': 'application/json' } });
    };
    const client = new InferClient({ baseUrl: 'http://gw.invalid', apiKey: 'k', adminKey: 'a', fetch: recording });
    const calls: Array<[string, (id: string) => Promise<unknown>]> = [
      ['jobs.get', (id) => client.jobs.get(id)],
      ['jobs.cancel', (id) => client.jobs.cancel(id)],
      ['models.get', (id) => client.models.get(id)],
      ['batches.get', (id) => client.batches.get(id)],
      ['webhooks.jobDeliveries', (id) => client.webhooks.jobDeliveries(id)],
      ['webhooks.batchDeliveries', (id) => client.webhooks.batchDeliveries(id)],
      ['models.rollout', (id) => client.models.rollout('mlp', id)],
      ['models.cancelRollout', (id) => client.models.cancelRollout('mlp', id)],
    ];
    const problems: string[] = [];
    for (const [name, call] of calls) {
      for (const id of ['', '.', '..']) {
        let error: unknown;
        // A call that throws synchronously would not reach the catch of a promise chain: the call itself is in the try.
        try {
          await call(id);
        } catch (err) {
          error = err;
        }
        if (!(error instanceof InferArgumentError)) problems.push(`${name}(${JSON.stringify(id)}): ${error === undefined ? 'resolved' : String(error)}`);
      }
    }
    expect(problems, problems.join('\n')).to.deep.equal([]);
    expect(sent, 'requests sent').to.deep.equal([]);
    // A dot inside an id is an ordinary character: sent as it is.
    await client.jobs.get('a.b');
    expect(sent).to.deep.equal(['http://gw.invalid/v1/jobs/a.b']);
  });
});
