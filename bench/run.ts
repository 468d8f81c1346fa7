/**
 * `npm run bench [-- section ...]`: every section, or the named ones. Each
 * prints its figures and targets; all figures also go to
 * bench/results/latest.json. Targets are ratios measured within one run
 * (the machine is shared and noisy); the bench reports, it does not fail.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, type Figure } from './lib/platform.js';
import { runFoundationBench } from './sections/foundation.js';
import { runWebhooksBench } from './sections/webhooks.js';

type Section = (log: (s: string) => void) => Promise<Figure[]>;

const SECTIONS: Record<string, () => Promise<Section>> = {
  foundation: async () => runFoundationBench,
  webhooks: async () => (log) => runWebhooksBench(log),
  batches: async () => {
    const mod = await import('./sections/batches.js');
    return async (log) => {
      log('\n== batches: 100,000-row mlp batches, interactive latency under a 200,000-row batch, memory under 1,000,000 lines');
      return mod.runBatchesBench({ log: (l) => log(`  ${l}`) });
    };
  },
};

async function main(): Promise<void> {
  const asked = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const names = asked.length ? asked : Object.keys(SECTIONS);
  const unknown = names.filter((n) => !(n in SECTIONS));
  if (unknown.length) {
    console.error(`unknown section(s): ${unknown.join(', ')}; sections: ${Object.keys(SECTIONS).join(', ')}`);
    process.exit(2);
  }
  const results: Record<string, Figure[]> = {};
  for (const name of names) {
    const section = await SECTIONS[name]!();
    results[name] = await section((s) => console.log(s));
  }
  const dir = path.join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'latest.json'), JSON.stringify({ at: new Date().toISOString(), results }, null, 2));
  const missed = Object.values(results)
    .flat()
    .filter((f) => f.ok === false);
  console.log(`\n${missed.length === 0 ? 'every target met' : `targets missed: ${missed.map((f) => f.name).join('; ')}`}`);
  process.exit(0);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
