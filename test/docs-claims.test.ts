/**
 * Statements of the docs and comments that can drift from the code, held to
 * what the code does: the package lists, a size, the held-jobs snapshot's
 * room, how a webhook attempt is written.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { newEnvelopeId } from '@infer/contract';
import { HeldSnapshot } from '../packages/locks/src/lock-renewal.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const read = (...parts: string[]) => readFileSync(path.join(ROOT, ...parts), 'utf8');
const packages = () =>
  readdirSync(path.join(ROOT, 'packages'), { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();

describe('docs and comments against the code', function () {
  this.timeout(30_000);

  // README.md "Project layout" lists packages/ one folder a line.
  it('README.md "Project layout" lists every folder of packages/', () => {
    const readme = read('README.md');
    const layout = readme.slice(readme.indexOf('## Project layout'));
    const block = layout.slice(layout.indexOf('packages/'), layout.indexOf('scripts/'));
    const listed = [...block.matchAll(/^ {2}([a-z-]+)\//gm)].map((m) => m[1]!).sort();
    expect(listed, 'packages in the README layout').to.deep.equal(packages());
  });

  // docs/architecture.md "Packages" ("One line each").
  it('docs/architecture.md "Packages" has a line for every folder of packages/', () => {
    const arch = read('docs', 'architecture.md');
    const list = arch.slice(arch.indexOf('## Packages'), arch.indexOf('## Envelopes'));
    const listed = [...list.matchAll(/^- `packages\/([a-z-]+)`/gm)].map((m) => m[1]!).sort();
    expect(listed, 'packages in docs/architecture.md').to.deep.equal(packages());
  });

  // README.md: "A 3×48×192 image for the `ocr-cls` text-direction classifier is N KiB of float32".
  it('README.md: a 3×48×192 FP32 image is the number of KiB the README writes', () => {
    const m = /3×48×192 image for the `ocr-cls` text-direction classifier is (\d+) KiB/.exec(read('README.md'));
    expect(m, 'the README sentence').to.not.equal(null);
    expect(Number(m![1]), 'KiB of a 3×48×192 float32 image').to.equal((3 * 48 * 192 * 4) / 1024);
  });

  // packages/locks/src/lock-renewal.ts, SNAPSHOT_BYTES: "room for ~350 held jobs" (envelope ids and BullMQ's
  // `<worker uuid>:<n>` tokens); the buffer grows whenever text.length * 3 exceeds its bytes.
  it('packages/locks: the first snapshot buffer holds ~350 held jobs (300 here) without growing', () => {
    expect(read('packages', 'locks', 'src', 'lock-renewal.ts')).to.include('room for ~350 held jobs');
    let grewAt: number | undefined;
    const held = new Map<string, string>();
    const snapshot = new HeldSnapshot(() => (grewAt ??= held.size));
    const worker = randomUUID();
    for (let i = 0; i < 300; i++) {
      held.set(newEnvelopeId(), `${worker}:${i}`);
      snapshot.write(held, new Set(), new Set());
    }
    expect(grewAt, 'jobs held when the snapshot first had to grow').to.equal(undefined);
  });

  // packages/contract/src/queues.ts, webhookEvent: "an attempt writes both in one script" (RECORD_ATTEMPT,
  // packages/webhooks/src/delivery-log.ts), as docs/architecture.md says.
  it('packages/contract: the comment on webhookEvent says how an attempt is written (a script, not MULTI)', () => {
    const contract = read('packages', 'contract', 'src', 'queues.ts');
    const log = read('packages', 'webhooks', 'src', 'delivery-log.ts');
    expect(log).to.match(/defineCommand\('inferWebhookRecordAttempt'/);
    const says = /an attempt writes both in one (MULTI|script)/.exec(contract)?.[1];
    expect(says, 'packages/contract/src/queues.ts on webhookEvent').to.equal(log.includes('.multi(') ? 'MULTI' : 'script');
  });
});
