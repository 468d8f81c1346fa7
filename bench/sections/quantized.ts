/**
 * The int8 candidate beside the model it would replace, for a canary
 * decision (issue "ship new model versions without downtime"): mlp v2
 * (models/mlp/2) and its dynamically quantised copy (examples/models/mlp/3,
 * built by `npm run models`; scripts/build-models.ts says how and why), both
 * loaded by the platform's ModelRepository, so with the worker's session
 * options, in this one process:
 *  1. raw ONNX Runtime rows/s at batch 1 and 64 (../lib/ort-throughput.ts),
 *     the two models interleaved round by round so the machine's noise
 *     falls on both alike; the median round of each;
 *  2. how far the candidate's probabilities are from v2's on 10,000 seeded
 *     rows (uniform in [-1, 1]), run in batches of 64 as the worker batches
 *     them and one row at a time: the largest and mean |Δp|, the share of
 *     rows whose argmax (the class) differs, how close to a tie in v2 those
 *     rows were, and how far a row's answer moves with its batch mates
 *     (DynamicQuantizeLinear takes one scale for the whole batch).
 * No targets: the figures inform the decision, they do not gate it.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { ModelRepository, type ModelVersion } from '@infer/models';
import { mulberry32 } from '../../scripts/build-models.js';
import { measureOrt } from '../lib/ort-throughput.js';
import { ROOT, type Figure } from '../lib/platform.js';
import { fmt, table } from '../lib/report.js';

export interface QuantizedOptions {
  /** Seconds per model, batch size and round. @default 1 */
  ortSeconds?: number;
  /** Interleaved rounds; each cell reports its median. @default 3 */
  rounds?: number;
  /** Seeded rows compared. @default 10_000 */
  rows?: number;
}

const BATCHES = [1, 64] as const;
const WIDTH = 64;
const CLASSES = 4;
const SEED = 0xbe11c4;
const CANDIDATE = path.join(ROOT, 'examples', 'models');

export async function runQuantizedBench(log: (s: string) => void = console.log, options: QuantizedOptions = {}): Promise<Figure[]> {
  const figures: Figure[] = [];
  const fig = (name: string, value: number, unit: string) => figures.push({ name, value, unit });
  const started = performance.now();
  const seconds = options.ortSeconds ?? 1;
  const rounds = options.rounds ?? 3;
  const rows = options.rows ?? 10_000;

  if (!existsSync(path.join(CANDIDATE, 'mlp', '3', 'model.onnx'))) {
    throw new Error(`no ${path.relative(ROOT, path.join(CANDIDATE, 'mlp', '3', 'model.onnx'))}: run "npm run models" to build it`);
  }
  const served = await ModelRepository.load(path.join(ROOT, 'models'), { only: ['mlp'] });
  const examples = await ModelRepository.load(CANDIDATE, { only: ['mlp'] });
  try {
    const models = [
      { label: 'mlp v2 (FP32)', key: 'mlp v2', model: served.resolve('mlp', '2') },
      { label: 'int8 candidate', key: 'int8 candidate', model: examples.resolve('mlp', '3') },
    ] as const;

    // 1. Throughput.
    log(`\n== quantized 1/2: raw ONNX Runtime, ${models.map((m) => `${m.label} (${path.relative(ROOT, m.model.file)})`).join(' beside ')}, the worker's session options; ${rounds} interleaved rounds of ${seconds} s per model and batch size`);
    log(`  CPU: ${cpuText()}`);
    const rates = new Map<string, number[]>();
    for (let round = 0; round < rounds; round++) {
      for (const batch of BATCHES) {
        for (const m of models) {
          const r = await measureOrt(m.model.session, { name: 'features', width: WIDTH }, batch, seconds);
          const key = `${m.key}@${batch}`;
          rates.set(key, [...(rates.get(key) ?? []), r.rowsPerSecond]);
        }
      }
    }
    const median = (key: string): number => {
      const xs = [...rates.get(key)!].sort((a, b) => a - b);
      return xs[Math.floor(xs.length / 2)]!;
    };
    const spread = (key: string): string => {
      const xs = rates.get(key)!;
      return `${fmt(Math.min(...xs), 0)}–${fmt(Math.max(...xs), 0)}`;
    };
    log(
      table(
        ['batch', 'v2 rows/s', 'int8 rows/s', 'int8 / v2', 'v2 rounds', 'int8 rounds'],
        BATCHES.map((b) => {
          const [v2, int8] = models.map((m) => median(`${m.key}@${b}`)) as [number, number];
          return [String(b), v2, int8, `${(int8 / v2).toFixed(2)}×`, spread(`mlp v2@${b}`), spread(`int8 candidate@${b}`)];
        }),
      ),
    );
    for (const b of BATCHES) {
      for (const m of models) fig(`${m.key} batch ${b}: rows/s (median of ${rounds})`, median(`${m.key}@${b}`), 'rows/s');
      fig(`ratio int8 / v2 rows/s at batch ${b}`, median(`int8 candidate@${b}`) / median(`mlp v2@${b}`), '×');
    }

    // 2. Outputs.
    log(`\n== quantized 2/2: the candidate's probabilities against v2's on ${fmt(rows, 0)} seeded rows (uniform in [-1, 1])`);
    const next = mulberry32(SEED);
    const x = Float32Array.from({ length: rows * WIDTH }, () => next() * 2 - 1);
    const expected = await probabilities(models[0].model, x, 64);
    const batched = await probabilities(models[1].model, x, 64);
    const alone = await probabilities(models[1].model, x, 1);
    const compared = [
      { how: 'in batches of 64', key: 'batches of 64', ...compare(batched, expected) },
      { how: 'one row at a time', key: 'one at a time', ...compare(alone, expected) },
    ];
    log(
      table(
        ['int8 run', 'max |Δp|', 'mean |Δp|', 'argmax differs', 'share', "widest v2 top-2 gap among them"],
        compared.map((c) => [c.how, c.maxAbs.toExponential(2), c.meanAbs.toExponential(2), fmt(c.flips, 0), `${(c.flipShare * 100).toFixed(2)}%`, c.flips ? c.widestFlipGap.toExponential(2) : '-']),
      ),
    );
    const batchShift = compare(batched, alone).maxAbs;
    log(`  a row batched vs alone (the candidate only; one quantisation scale per batch): max |Δp| ${batchShift.toExponential(2)}`);
    log(`  for scale: v1 against v2 differ by up to ${compare(await probabilities(served.resolve('mlp', '1'), x, 64), expected).maxAbs.toFixed(3)} on the same rows`);
    for (const c of compared) {
      fig(`int8 vs v2, ${c.key}: max |Δp|`, c.maxAbs, 'probability');
      fig(`int8 vs v2, ${c.key}: mean |Δp|`, c.meanAbs, 'probability');
      fig(`int8 vs v2, ${c.key}: rows whose argmax differs`, c.flipShare * 100, '%');
    }
    fig('int8 candidate, a row batched vs alone: max |Δp|', batchShift, 'probability');
  } finally {
    await Promise.all([served.close(), examples.close()]);
  }
  log(`\n  (quantized took ${((performance.now() - started) / 1000).toFixed(0)} s)`);
  return figures;
}

/** Probabilities of every row of `x`, run `batch` rows at a time (the last run may be shorter). */
async function probabilities(model: ModelVersion, x: Float32Array, batch: number): Promise<Float32Array> {
  const rows = x.length / WIDTH;
  const out = new Float32Array(rows * CLASSES);
  for (let r = 0; r < rows; r += batch) {
    const n = Math.min(batch, rows - r);
    const result = await model.session.run({ features: new ort.Tensor('float32', x.slice(r * WIDTH, (r + n) * WIDTH), [n, WIDTH]) });
    out.set(result.probabilities!.data as Float32Array, r * CLASSES);
  }
  return out;
}

function compare(got: Float32Array, expected: Float32Array) {
  const rows = expected.length / CLASSES;
  let maxAbs = 0;
  let sum = 0;
  let flips = 0;
  let widestFlipGap = 0;
  for (let r = 0; r < rows; r++) {
    const g = got.subarray(r * CLASSES, (r + 1) * CLASSES);
    const e = expected.subarray(r * CLASSES, (r + 1) * CLASSES);
    for (let j = 0; j < CLASSES; j++) {
      const d = Math.abs(g[j]! - e[j]!);
      maxAbs = Math.max(maxAbs, d);
      sum += d;
    }
    if (argmax(g) !== argmax(e)) {
      flips++;
      const [first, second] = Array.from(e).sort((a, b) => b - a);
      widestFlipGap = Math.max(widestFlipGap, first! - second!);
    }
  }
  return { maxAbs, meanAbs: sum / expected.length, flips, flipShare: flips / rows, widestFlipGap };
}

function argmax(p: Float32Array): number {
  let best = 0;
  for (let j = 1; j < p.length; j++) if (p[j]! > p[best]!) best = j;
  return best;
}

/** The CPU's model and whether it has VNNI (the int8 dot product int8 speed depends on). */
function cpuText(): string {
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    const name = /^model name\s*:\s*(.+)$/m.exec(info)?.[1] ?? 'unknown';
    const flags = /^flags\s*:\s*(.+)$/m.exec(info)?.[1]?.split(' ') ?? [];
    const vnni = flags.filter((f) => f === 'avx512_vnni' || f === 'avx_vnni');
    return `${name}; VNNI: ${vnni.length ? vnni.join(', ') : 'none (the candidate\'s 7-bit weights keep its answers the same; its speed may differ)'}`;
  } catch {
    return 'unknown (no /proc/cpuinfo)';
  }
}
