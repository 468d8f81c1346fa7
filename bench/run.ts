/**
 * `npm run bench [-- section ...]`: every section, or the named ones, in
 * order. Each section is a module under bench/sections that prints its own
 * report and returns its figures; all figures also go to
 * bench/results/latest.json (merged over the sections it already holds, so
 * running one section keeps the others' last figures). Targets are ratios
 * measured within one run (the machine is shared and noisy); the bench
 * reports, it does not fail: it exits 0 whether targets are met or not, and
 * non-zero only when a section could not run.
 *
 * To add a section: a module exporting `(log) => Promise<Figure[]>`, and one
 * line in SECTIONS.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, type Figure } from './lib/platform.js';

type Section = (log: (s: string) => void) => Promise<Figure[]>;

/** Loaded on demand, so one section's imports (or breakage) never costs another's run. */
const SECTIONS: Record<string, () => Promise<Section>> = {
  foundation: async () => (await import('./sections/foundation.js')).runFoundationBench,
  webhooks: async () => {
    const mod = await import('./sections/webhooks.js');
    return (log) => mod.runWebhooksBench(log);
  },
  ocr: async () => (await import('./sections/ocr.js')).runOcrBench,
  batches: async () => {
    const mod = await import('./sections/batches.js');
    return async (log) => {
      log('\n== batches: 100,000-row mlp batches, interactive latency under a 200,000-row batch, memory under 1,000,000 lines');
      return mod.runBatchesBench({ log: (l) => log(`  ${l}`) });
    };
  },
  memory: async () => (await import('./sections/memory.js')).runMemoryBench,
  quantized: async () => (await import('./sections/quantized.js')).runQuantizedBench,
  observability: async () => (await import('./sections/observability.js')).runObservabilityBench,
};

interface ResultsFile {
  updated_at: string;
  sections: Record<string, { at: string; seconds: number; figures: Figure[] }>;
}

const RESULTS = path.join(ROOT, 'bench', 'results', 'latest.json');

function readResults(): ResultsFile {
  try {
    if (existsSync(RESULTS)) {
      const parsed = JSON.parse(readFileSync(RESULTS, 'utf8')) as Partial<ResultsFile>;
      if (parsed.sections && typeof parsed.sections === 'object') return { updated_at: '', sections: parsed.sections };
    }
  } catch {
    /* an older or broken file: start afresh */
  }
  return { updated_at: '', sections: {} };
}

async function main(): Promise<void> {
  const asked = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const names = asked.length ? asked : Object.keys(SECTIONS);
  const unknown = names.filter((n) => !(n in SECTIONS));
  if (unknown.length) {
    console.error(`unknown section(s): ${unknown.join(', ')}; sections: ${Object.keys(SECTIONS).join(', ')}`);
    process.exit(2);
  }
  const results = readResults();
  const missed: string[] = [];
  for (const name of names) {
    const t0 = performance.now();
    const figures = await (await SECTIONS[name]!())((s) => console.log(s));
    const at = new Date().toISOString();
    results.sections[name] = { at, seconds: Math.round((performance.now() - t0) / 100) / 10, figures };
    results.updated_at = at;
    missed.push(...figures.filter((f) => f.ok === false).map((f) => `${name}: ${f.name}`));
    // Written after every section, so an interrupted run keeps what it measured.
    mkdirSync(path.dirname(RESULTS), { recursive: true });
    writeFileSync(RESULTS, `${JSON.stringify(results, null, 2)}\n`);
  }
  console.log(`\n${missed.length === 0 ? 'every target met' : `targets missed: ${missed.join('; ')}`}`);
  console.log(`figures written to ${path.relative(ROOT, RESULTS)}`);
}

// An interrupted bench exits through process.exit, whose 'exit' hook (lib/platform.ts) kills the processes it started.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
