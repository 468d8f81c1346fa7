/**
 * What a day of results costs in Redis: the bytes a job leaves behind once
 * it has ended (kept for RESULT_TTL_SECONDS), all keys included, and the
 * bytes a bulk row leaves. On a throwaway redis-server, with the real
 * gateway and worker processes:
 *
 *  1. `used_memory` before and after 20,000 single mlp jobs (64 clients,
 *     `Prefer: wait`, so every one has ended), once the queue is empty:
 *     (after − before) / jobs is what each job retains, whatever key holds
 *     it (its record, indexes, streams, counters…). `MEMORY USAGE` of one
 *     record, and the keys the run added, tell where it is.
 *  2. The same for an ocr-cls job (2 output floats): its record against its
 *     output's size.
 *  3. `used_memory` before and after a 100,000-row mlp batch, once ended.
 *
 * Targets (issue "Results that fit in Redis for a day"): ≤ 500 B per mlp job
 * all keys included; an mlp record's MEMORY USAGE ≤ 400 B; an ocr-cls
 * record ≤ its output + 300 B; ≤ 100 B per mlp bulk row.
 */
import type { Redis } from 'ioredis';
import { keys } from '@infer/contract';
import { closedLoop } from '../lib/http-load.js';
import { BENCH_KEY, benchApi, startBenchPlatform, startRedis, until, type Figure } from '../lib/platform.js';
import { fmt, table, verdict } from '../lib/report.js';

const JOBS = 20_000;
const ROWS = 100_000;

async function usedMemory(redis: Redis): Promise<number> {
  // Let lazy frees (UNLINK, expired keys) settle before reading.
  await until('lazyfree to settle', async () => /lazyfree_pending_objects:0\b/.test(await redis.info('memory')), 10_000, 20);
  return Number(/^used_memory:(\d+)/m.exec(await redis.info('memory'))![1]);
}

const dbsize = (redis: Redis) => redis.dbsize();

/** Until no job is left in any interactive queue: every job index empty. */
async function drained(redis: Redis, prefix: string): Promise<void> {
  await until(
    'the queues to drain',
    async () => {
      const [, found] = await redis.scan('0', 'MATCH', `${prefix}:{*}:jobs`, 'COUNT', 10_000);
      for (const k of found) if ((await redis.hlen(k)) > 0) return false;
      return true;
    },
    120_000,
    50,
  );
}

export async function runMemoryBench(log: (s: string) => void = console.log): Promise<Figure[]> {
  const figures: Figure[] = [];
  const fig = (name: string, value: number, unit: string, target?: { text: string; ok: boolean }) =>
    figures.push({ name, value, unit, ...(target ? { target: target.text, ok: target.ok } : {}) });
  const redis = await startRedis();
  const platform = await startBenchPlatform(redis.url, { workerModels: 'mlp,ocr-cls' });
  try {
    const { admin } = redis;
    const mlpBodies = Array.from({ length: 256 }, () => JSON.stringify({ model: 'mlp', input: { features: Array.from({ length: 64 }, () => Math.random() * 2 - 1) } }));
    const load = (bodies: string[], n: number, clients: number) =>
      closedLoop({ url: `${platform.base}/v1/jobs`, clients, seconds: 600, maxRequests: n, headers: { authorization: `Bearer ${BENCH_KEY}`, prefer: 'wait=30' }, bodies });
    // Warm-up: every structure a job touches exists before the first reading (queues, meta, scripts).
    await load(mlpBodies, 2000, 64);
    await drained(admin, platform.prefix);

    log(`\n== memory 1/3: ${fmt(JOBS, 0)} single mlp jobs (64 clients, Prefer: wait), then the queue drained`);
    const m0 = await usedMemory(admin);
    const k0 = await dbsize(admin);
    const run = await load(mlpBodies, JOBS, 64);
    const ok = run.answers.filter((a) => a.status === 200);
    await drained(admin, platform.prefix);
    const m1 = await usedMemory(admin);
    const k1 = await dbsize(admin);
    const perJob = (m1 - m0) / ok.length;
    const sampleId = (JSON.parse(ok[ok.length - 1]!.text) as { id: string }).id;
    const recordKey = keys(platform.prefix).job(sampleId);
    const mlpRecord = Number(await admin.call('MEMORY', 'USAGE', recordKey, 'SAMPLES', '0'));
    const mlpValue = await admin.strlen(recordKey);
    log(
      table(
        ['jobs ended', 'used_memory before', 'after', 'bytes per job (all keys)', 'keys added per job', 'MEMORY USAGE of a record', 'record value bytes'],
        [[ok.length, fmt(m0, 0), fmt(m1, 0), perJob.toFixed(0), ((k1 - k0) / ok.length).toFixed(2), mlpRecord, mlpValue]],
      ),
    );

    log(`\n== memory 2/3: an ocr-cls job (output softmax_0.tmp_0: FP32 [2], 8 bytes)`);
    const image = Buffer.from(new Float32Array(3 * 48 * 192).map(() => Math.random()).buffer).toString('base64');
    const res = await benchApi(platform.base, '/v1/jobs', {
      method: 'POST',
      headers: { prefer: 'wait=30' },
      body: JSON.stringify({ model: 'ocr-cls', input: { x: { datatype: 'FP32', shape: [3, 48, 192], b64: image } } }),
    });
    const ocrJob = (await res.json()) as { id: string; status: string };
    if (ocrJob.status !== 'succeeded') throw new Error(`ocr-cls job: ${JSON.stringify(ocrJob)}`);
    const ocrKey = keys(platform.prefix).job(ocrJob.id);
    const ocrRecord = Number(await admin.call('MEMORY', 'USAGE', ocrKey, 'SAMPLES', '0'));
    const ocrOutput = 8;
    log(table(['MEMORY USAGE of the record', 'record value bytes', 'output bytes', 'record − output'], [[ocrRecord, await admin.strlen(ocrKey), ocrOutput, ocrRecord - ocrOutput]]));

    log(`\n== memory 3/3: a ${fmt(ROWS, 0)}-row mlp batch (NDJSON), once completed`);
    const b0 = await usedMemory(admin);
    const lines = Array.from({ length: ROWS }, (_, i) => `{"custom_id":"r${i}","input":{"features":${mlpBodies[i % mlpBodies.length]!.slice(mlpBodies[i % mlpBodies.length]!.indexOf('['), mlpBodies[i % mlpBodies.length]!.lastIndexOf(']') + 1)}}}\n`).join('');
    const upload = await benchApi(platform.base, '/v1/batches?model=mlp', { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: lines });
    if (upload.status !== 202) throw new Error(`batch upload: ${upload.status} ${await upload.text()}`);
    const batch = (await upload.json()) as { id: string };
    await until(
      'the batch to complete',
      async () => ((await (await benchApi(platform.base, `/v1/batches/${batch.id}`)).json()) as { status: string }).status === 'completed',
      600_000,
      100,
    );
    const b1 = await usedMemory(admin);
    const perRow = (b1 - b0) / ROWS;
    log(table(['rows', 'used_memory before', 'after', 'bytes per row (all keys)'], [[ROWS, fmt(b0, 0), fmt(b1, 0), perRow.toFixed(1)]]));

    log('\n== memory targets');
    const rows = [
      ['Redis bytes retained per ended mlp job, all keys', perJob.toFixed(0), '≤ 500', verdict(perJob <= 500)],
      ['MEMORY USAGE of an ended mlp job record', String(mlpRecord), '≤ 400', verdict(mlpRecord <= 400)],
      ['MEMORY USAGE of an ended ocr-cls record − its output', String(ocrRecord - ocrOutput), '≤ 300', verdict(ocrRecord - ocrOutput <= 300)],
      ['Redis bytes retained per mlp bulk row', perRow.toFixed(1), '≤ 100', verdict(perRow <= 100)],
    ];
    log(table(['target', 'measured', 'target', 'verdict'], rows));
    fig('Redis bytes per ended mlp job (all keys)', perJob, 'bytes', { text: '≤ 500', ok: perJob <= 500 });
    fig('MEMORY USAGE of an mlp job record', mlpRecord, 'bytes', { text: '≤ 400', ok: mlpRecord <= 400 });
    fig('MEMORY USAGE of an ocr-cls job record minus its output', ocrRecord - ocrOutput, 'bytes', { text: '≤ 300', ok: ocrRecord - ocrOutput <= 300 });
    fig('Redis bytes per mlp bulk row (all keys)', perRow, 'bytes', { text: '≤ 100', ok: perRow <= 100 });
    fig('Redis keys added per ended mlp job', (k1 - k0) / ok.length, 'keys');
  } finally {
    await platform.close();
    await redis.stop();
  }
  return figures;
}
