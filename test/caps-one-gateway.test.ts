import net from 'node:net';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, newJobId, queueTag, type EnvelopeJob } from '@infer/contract';
import { ModelRepository } from '@infer/models';
import { decodeInput } from '@infer/tensors';
import { EnvelopeWriter } from '../apps/gateway/src/jobs/envelope-writer.js';
import { mlpFeatures } from './helpers/batches.js';
import { deletePrefix, SHIPPED_MODELS, startPlatform, TEST_KEY, TEST_REDIS_URL, uniquePrefix, type TestPlatform } from './helpers/platform.js';

/**
 * TENANT_MAX_QUEUED and MAX_QUEUE_DEPTH on ONE gateway, over several queues.
 *
 * docs/api.md, POST /v1/jobs: the counts are "exact within a model version's
 * queue, and across queues as fresh as the gateway's last look ... plus what
 * that gateway is writing to them itself"; only a burst through different
 * gateways may go over. Envelopes for two versions written in the same turn
 * must each count the other (the one begun first), or one gateway lets a
 * tenant queue a whole cap per extra queue; and they must not count each
 * other twice, or jobs under the cap are refused.
 */

const SLACK = 3; // "within a few jobs"

describe('caps: one gateway holds TENANT_MAX_QUEUED and MAX_QUEUE_DEPTH across queues', function () {
  this.timeout(60_000);

  describe('the envelope writer, two model versions in one turn', () => {
    let redis: Redis;
    let repo: ModelRepository;
    let prefix: string;
    before(async () => {
      redis = new Redis(TEST_REDIS_URL);
      repo = await ModelRepository.load(SHIPPED_MODELS, { only: ['mlp'] });
      prefix = uniquePrefix('cap');
    });
    after(async () => {
      await repo.close();
      redis.disconnect();
      await deletePrefix(TEST_REDIS_URL, prefix);
    });

    function jobsFor(version: string, n: number, tenant: string) {
      const model = repo.resolve('mlp', version);
      return Array.from({ length: n }, () => ({
        model,
        job: { id: newJobId(queueTag('mlp', version)), tenant, created_at: Date.now() } as EnvelopeJob,
        inputs: [decodeInput(mlpFeatures(1), model.inputs[0]!)],
      }));
    }

    /** A writer with both versions' queues open, as a gateway has them from its start (ModelCatalog.onVersion → queueOf). */
    function openedWriter(options: { maxQueueDepth?: number; tenantMaxQueued?: number }): EnvelopeWriter {
      const w = new EnvelopeWriter({ redis, prefix, resultTtlMs: 60_000, maxQueueDepth: options.maxQueueDepth ?? 1_000_000, tenantMaxQueued: options.tenantMaxQueued, gatewayChannel: `${prefix}:gateway:t` });
      for (const v of ['1', '2']) w.queueOf(repo.resolve('mlp', v));
      return w;
    }

    async function queuedFor(tenant: string): Promise<number> {
      let sum = 0;
      for (const v of ['1', '2']) sum += Number((await redis.hget(interactiveKeys(prefix, 'mlp', v).tenants, tenant)) ?? 0);
      return sum;
    }

    it('TENANT_MAX_QUEUED=6: six jobs for version 1 and six for version 2 in one turn leave the tenant with at most 6 (+a few) queued', async () => {
      const w = openedWriter({ tenantMaxQueued: 6 });
      const all = [...jobsFor('1', 6, 'cap-t'), ...jobsFor('2', 6, 'cap-t')];
      const outcomes = await Promise.allSettled(all.map((j) => w.add(j.model, j.job, j.inputs)));
      const accepted = outcomes.filter((o) => o.status === 'fulfilled').length;
      const queued = await queuedFor('cap-t');
      expect(queued, 'the tenant hash agrees with the answers').to.equal(accepted);
      // Not 12, twice the cap, as when each envelope left the other out.
      expect(accepted, `one gateway accepted ${accepted} jobs for a tenant capped at 6`).to.be.at.most(6 + SLACK);
    });

    it('under both limits, jobs spread over two versions in one turn are all accepted (nobody counted twice)', async () => {
      const w = openedWriter({ tenantMaxQueued: 12, maxQueueDepth: 1_000_000 });
      const all = [...jobsFor('1', 6, 'room-t'), ...jobsFor('2', 6, 'room-t')];
      const outcomes = await Promise.allSettled(all.map((j) => w.add(j.model, j.job, j.inputs)));
      expect(outcomes.map((o) => o.status)).to.deep.equal(new Array(12).fill('fulfilled'));
      expect(await queuedFor('room-t')).to.equal(12);
    });

    it('MAX_QUEUE_DEPTH=8: eight jobs for each of two versions in one turn leave at most 8 (+a few) queued', async () => {
      const queuedInBoth = async () => {
        let sum = 0;
        for (const v of ['1', '2']) sum += Number((await redis.get(interactiveKeys(prefix, 'mlp', v).queued)) ?? 0);
        return sum;
      };
      const before = await queuedInBoth();
      const w = openedWriter({ maxQueueDepth: before + 8 });
      const all = [...jobsFor('1', 8, 'depth-t'), ...jobsFor('2', 8, 'depth-t')];
      const outcomes = await Promise.allSettled(all.map((j) => w.add(j.model, j.job, j.inputs)));
      const accepted = outcomes.filter((o) => o.status === 'fulfilled').length;
      expect((await queuedInBoth()) - before).to.equal(accepted);
      expect(accepted, `one gateway accepted ${accepted} jobs under a depth limit leaving room for 8`).to.be.at.most(8 + SLACK);
    });
  });

  describe('over HTTP, one gateway, one tenant', () => {
    const CAP = 10;
    let p: TestPlatform;
    before(async () => {
      p = await startPlatform({ worker: false, env: { TENANT_MAX_QUEUED: String(CAP) } });
    });
    after(async () => {
      await p?.close();
    });

    it('a burst spread over mlp versions 1 and 2, read in one turn, is held to TENANT_MAX_QUEUED (+a few), not a cap per version', async () => {
      // 2 × CAP requests pipelined on one keep-alive connection (HTTP/1.1): the gateway reads them in one
      // turn, as a busy gateway reads many clients' requests, and writes one envelope per version.
      const url = new URL(p.baseUrl);
      const socket = await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(Number(url.port), url.hostname, () => resolve(s));
        s.once('error', reject);
      });
      let text = '';
      const closed = new Promise<void>((resolve, reject) => {
        socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
        socket.once('close', () => resolve());
        socket.once('error', reject);
      });
      const n = 2 * CAP;
      let requests = '';
      for (let i = 0; i < n; i++) {
        const body = JSON.stringify({ model: 'mlp', version: i % 2 ? '1' : '2', input: { features: mlpFeatures(i) } });
        requests +=
          `POST /v1/jobs HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer ${TEST_KEY}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: ${i === n - 1 ? 'close' : 'keep-alive'}\r\n\r\n${body}`;
      }
      socket.write(requests);
      await closed;
      const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
      expect(statuses.length, 'one answer per request').to.equal(n);
      expect(statuses.every((s) => s === 202 || s === 429), statuses.join(',')).to.equal(true);
      const accepted = statuses.filter((s) => s === 202).length;
      expect(accepted, `one gateway accepted ${accepted} jobs of one tenant for a cap of ${CAP}`).to.be.at.most(CAP + SLACK);
    });
  });
});
