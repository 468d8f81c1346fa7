import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { ModelDescription } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { ModelControl } from '@infer/model-control';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { SHIPPED_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/api.md, Model lifecycle: "A change reaches every gateway and worker
 * within about a second"; Unloading: "A gateway routes from a view of the
 * routing that is at most a second old". docs/rollouts.md: "Either way, a
 * change made through the admin routes reaches every gateway and worker
 * within about a second." So the look at the folder, which loads models
 * (seconds for a large one), runs beside the once-a-second look at the
 * shared state, not inside it.
 */

describe('lifecycle: a gateway’s view of the routing while it loads a new version', function () {
  this.timeout(60_000);
  const repos: TempModelRepo[] = [];
  let p: TestPlatform | undefined;
  let worker: InferenceWorker | undefined;
  let redis: Redis | undefined;
  let writer: number | undefined;

  afterEach(async () => {
    // End the gateway's read of version 3's file (mlp 2's bytes, under the pipe's buffer), so its look ends and it can close.
    if (writer !== undefined) {
      writeSync(writer, readFileSync(path.join(SHIPPED_MODELS, 'mlp', '2', 'model.onnx')));
      closeSync(writer);
    }
    writer = undefined;
    redis?.disconnect();
    redis = undefined;
    await worker?.close();
    worker = undefined;
    await p?.close();
    p = undefined;
    for (const r of repos.splice(0)) r.remove();
  });

  /** A gateway (own folder, polling every 0.2 s) and a worker (own folder), mlp 1 and 2 ready; then a slow version 3 lands in the gateway's folder. */
  async function gatewayLoadingSlowVersion(): Promise<{ describeModel: () => Promise<ModelDescription> }> {
    const gw = servedMlpRepo(['1', '2']);
    const wk = servedMlpRepo(['1', '2']);
    repos.push(gw, wk);
    p = await startPlatform({ models: gw.root, worker: false, env: { MODEL_POLL_SECONDS: '0.2', ADMIN_API_KEYS: 'ops:views-admin' } });
    worker = await createWorker({ ...p.config, modelRepository: wk.root }, silentLogger);
    await p.gateway.catalog.refresh();
    const describeModel = async () => (await (await p!.api('/v1/models/mlp')).json()) as ModelDescription;
    await waitUntil(async () => (await describeModel()).versions_detail.filter((d) => d.state === 'ready').length === 2, 20_000, 'mlp 1 and 2 ready');
    expect((await describeModel()).routing).to.deep.equal({ '2': 100 });
    // A large version 3 lands in the gateway's folder: its model.onnx takes long to read (a named pipe stands
    // in for a multi-gigabyte file on a slow disk; the read lasts until the test ends it).
    const dir = path.join(gw.root, 'mlp', '3');
    mkdirSync(dir);
    const fifo = path.join(dir, 'model.onnx');
    execFileSync('mkfifo', [fifo]);
    writer = await waitUntil(
      () => {
        try {
          return openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK); // succeeds once the gateway reads it
        } catch {
          return undefined;
        }
      },
      10_000,
      'the gateway to begin loading version 3',
    );
    return { describeModel };
  }

  it('an admin routing change on that gateway (PUT …/routing) is answered within seconds while it loads a version that takes long to load', async () => {
    await gatewayLoadingSlowVersion();
    const started = Date.now();
    // Asked with node:http so that giving up closes the connection (the gateway's close waits for open ones).
    const status = await new Promise<number | string>((resolve) => {
      const body = JSON.stringify({ weights: { '1': 100 } });
      const req = http.request(`${p!.baseUrl}/v1/models/mlp/routing`, {
        method: 'PUT',
        headers: { authorization: 'Bearer views-admin', 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      });
      const timer = setTimeout(() => {
        resolve(`no answer after ${Date.now() - started} ms`);
        req.destroy();
      }, 5000);
      req.on('response', (res) => {
        clearTimeout(timer);
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', () => undefined);
      req.end(body);
    });
    expect(status).to.equal(200);
  });

  it('a routing change made elsewhere reaches a gateway within about a second even while that gateway is loading a version that takes long to load', async () => {
    const { describeModel } = await gatewayLoadingSlowVersion();

    // Meanwhile an admin pins the routing to 1 through another gateway (the same write its PUT makes).
    redis = new Redis(p!.config.redisUrl);
    expect(await new ModelControl(redis, p!.prefix).setRouting('mlp', { '1': 100 }, 'ops')).to.equal(true);
    const changedAt = Date.now();
    let seen: Record<string, number> = {};
    try {
      await waitUntil(
        async () => {
          seen = (await describeModel()).routing;
          return JSON.stringify(seen) === JSON.stringify({ '1': 100 });
        },
        3000,
        'the gateway to route by the new weights',
      );
    } catch {
      expect(seen, `this gateway's routing ${Date.now() - changedAt} ms after the change`).to.deep.equal({ '1': 100 });
    }
  });
});
