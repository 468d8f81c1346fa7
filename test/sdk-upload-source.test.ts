/**
 * What `batches.upload` does with its source when the
 * upload does not complete. docs/sdk.md: `upload` "reads its source a chunk
 * at a time as the request goes out", the request can be refused "while its
 * body is still streaming" (429 quota_exceeded, answered before the body is
 * read), and "pass a `signal` to abort it". The source (a file the SDK opened
 * itself, or the caller's generator) should then be let go of: the file
 * closed, the generator's `finally` run, and nothing more read from it.
 */
import { expect } from 'chai';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readdirSync, readlinkSync } from 'node:fs';
import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { InferApiError, InferClient } from '@infer/sdk';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

const line = `${JSON.stringify({ input: { features: new Array(64).fill(0.5) } })}\n`;

/** This process's open file descriptors on `file` (Linux /proc). */
function openDescriptorsOn(file: string): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === file) n++;
    } catch {
      // gone meanwhile
    }
  }
  return n;
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = http.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as AddressInfo;
  s.close();
  await once(s, 'close');
  return port;
}

describe('sdk: an upload that does not complete lets go of its source', function () {
  this.timeout(60_000);
  let p: TestPlatform | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    await p?.close();
    p = undefined;
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  async function bigFile(mib: number): Promise<string> {
    dir = await mkdtemp(path.join(os.tmpdir(), 'sdk-upload-'));
    const file = path.join(dir, 'rows.ndjson');
    await writeFile(file, line.repeat(Math.ceil((mib * 1024 * 1024) / line.length)));
    return file;
  }

  it('a file path refused with 429 quota_exceeded (answered before the body is read) is closed, not left open', async () => {
    p = await startPlatform({ worker: false, env: { TENANT_MAX_OPEN_BATCHES: '1' } });
    const client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
    await client.batches.create({ model: 'mlp', items: [{ input: { features: new Array(64).fill(0.5) } }] }); // stays open: no worker
    const file = await bigFile(32);
    for (let i = 0; i < 3; i++) {
      const err = await client.batches.upload({ model: 'mlp' }, file).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(InferApiError);
      expect(err).to.include({ status: 429, code: 'quota_exceeded' });
    }
    // Each refused upload leaves the read stream the SDK opened suspended, its descriptor open.
    await waitUntil(() => openDescriptorsOn(file) === 0, 3000, 'the file to be closed').catch(() => undefined);
    expect(openDescriptorsOn(file), 'descriptors still open on the uploaded file').to.equal(0);
  });

  it("a generator refused with 429 quota_exceeded has its finally run (return()), not left suspended forever", async () => {
    p = await startPlatform({ worker: false, env: { TENANT_MAX_OPEN_BATCHES: '1' } });
    const client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
    await client.batches.create({ model: 'mlp', items: [{ input: { features: new Array(64).fill(0.5) } }] });
    let finalized = false;
    let pulled = 0;
    async function* rows() {
      try {
        for (; pulled < 1_000_000; pulled++) yield line; // e.g. a database cursor, closed in finally
      } finally {
        finalized = true;
      }
    }
    const err = await client.batches.upload({ model: 'mlp' }, rows()).catch((e: unknown) => e);
    expect(err).to.include({ status: 429, code: 'quota_exceeded' });
    expect(pulled).to.be.below(1_000_000);
    await waitUntil(() => finalized, 3000, "the generator's finally").catch(() => undefined);
    expect(finalized, "the source generator's finally ran").to.equal(true);
  });

  it('a file path sent to a gateway that cannot be reached is closed', async () => {
    const client = new InferClient({ baseUrl: `http://127.0.0.1:${await closedPort()}`, apiKey: TEST_KEY });
    const file = await bigFile(1);
    const err = await client.batches.upload({ model: 'mlp' }, file).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(TypeError); // fetch failed, ECONNREFUSED
    await waitUntil(() => openDescriptorsOn(file) === 0, 3000, 'the file to be closed').catch(() => undefined);
    expect(openDescriptorsOn(file), 'descriptors still open on the uploaded file').to.equal(0);
  });

  it('an upload aborted with its signal stops reading the source (not read to its end after the abort)', async () => {
    // A gateway that takes the request and reads nothing: only the socket's buffers take what is sent.
    const server = http.createServer((req) => req.pause());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const client = new InferClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, apiKey: TEST_KEY });
      const chunk = 'x'.repeat(63 * 1024) + '\n';
      const cap = 4000; // ~250 MiB: far more than any socket buffer
      let pulled = 0;
      let finalized = false;
      // The caller gives up once 32 chunks (2 MiB) are on their way.
      let underway!: () => void;
      const halfway = new Promise<void>((resolve) => (underway = resolve));
      async function* rows() {
        try {
          for (; pulled < cap; pulled++) {
            if (pulled === 32) underway();
            yield chunk;
          }
        } finally {
          finalized = true;
        }
      }
      const controller = new AbortController();
      const upload = client.batches.upload({ model: 'mlp' }, rows(), { signal: controller.signal }).catch((e: unknown) => e);
      await halfway;
      const pulledAtAbort = pulled;
      const reason = new Error('caller gave up');
      controller.abort(reason);
      expect(await upload).to.equal(reason);
      await waitUntil(() => finalized, 10_000, "the generator's finally").catch(() => undefined);
      expect(finalized, "the source generator's finally ran").to.equal(true);
      expect(pulled - pulledAtAbort, `chunks pulled after the abort (${pulledAtAbort} before it, cap ${cap})`).to.be.below(16);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe('sdk: an upload item JSON cannot carry', function () {
  this.timeout(20_000);

  it("rejects with the SDK's own TypeError naming the NaN, not fetch's \"fetch failed\" (which docs/sdk.md keeps for exchanges that never got an answer)", async () => {
    let requests = 0;
    const server = http.createServer((req, res) => {
      requests++;
      req.resume();
      req.on('end', () => res.writeHead(202, { 'content-type': 'application/json' }).end('{}'));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const client = new InferClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, apiKey: TEST_KEY });
      const err = (await client.batches.upload({ model: 'mlp' }, [{ input: { x: [1] } }, { input: { x: [Number.NaN] } }]).catch((e: unknown) => e)) as Error;
      expect(err).to.be.instanceOf(TypeError);
      expect(err.message, `message (cause: ${String((err as { cause?: unknown }).cause)})`).to.match(/NaN/);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
