import { expect } from 'chai';
import { parse } from './helpers/prometheus.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * Express serves every letter case of a path (`/V1/Batches/x` is `GET /v1/batches/:id`), and the guard
 * refuses such a request with 401 before routing: its `route` label is the documented route its path
 * fits, in any case, not `unmatched`.
 */
describe('metrics: a request refused before routing is labelled with its route whatever its letter case', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p?.close();
  });

  it('labels a 401 on /V1/Batches/{id} and /V1/JOBS/{id} with their documented patterns, not unmatched', async () => {
    // The same paths with a valid key are served (200/404 from the routes themselves): they are routes.
    const served = await p.api('/V1/Batches/nope');
    expect(served.status, 'a valid key on /V1/Batches/nope reaches the batch route').to.equal(404);
    expect(((await served.json()) as { code: string }).code).to.equal('batch_not_found');

    for (const path of ['/V1/Batches/nope', '/V1/JOBS/nope']) {
      const res = await p.api(path, { key: 'not-a-key' });
      expect(res.status, path).to.equal(401);
      await res.arrayBuffer();
    }
    const samples = parse(await (await fetch(`${p.baseUrl}/metrics`)).text());
    const refused = samples
      .filter((s) => s.name === 'infer_http_request_duration_seconds_count' && s.labels.status === '401')
      .map((s) => `${s.labels.method} ${s.labels.route} ${s.value}`)
      .sort();
    expect(refused).to.deep.equal(['GET /v1/batches/:id 1', 'GET /v1/jobs/:id 1']);
  });
});
