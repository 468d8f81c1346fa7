import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ElemType, encodeModel, node, valueInfo } from '../../scripts/lib/onnx-builder.js';

export interface ModelEntry {
  /** A model folder to take the versions from (`<dir>/<version>/model.onnx`). */
  from?: string;
  /** Or the bytes of version 1's model.onnx. */
  onnx?: Uint8Array;
  /** The model's config.json; absent copies `from`'s, if any. */
  config?: Record<string, unknown>;
}

export interface TempModelRepo {
  root: string;
  remove(): void;
}

/**
 * A throwaway MODEL_REPOSITORY: shipped or fixture models linked in by
 * version folder (no copying of weights), each with the config.json a test
 * wants, plus models built on the spot.
 */
export function tempModelRepo(models: Record<string, ModelEntry>): TempModelRepo {
  const root = mkdtempSync(path.join(os.tmpdir(), 'infer-models-'));
  for (const [name, entry] of Object.entries(models)) {
    const dir = path.join(root, name);
    mkdirSync(dir);
    if (entry.from) {
      for (const v of readdirSync(entry.from).filter((d) => /^[1-9][0-9]*$/.test(d))) {
        symlinkSync(path.resolve(entry.from, v), path.join(dir, v), 'dir');
      }
    }
    if (entry.onnx) {
      mkdirSync(path.join(dir, '1'));
      writeFileSync(path.join(dir, '1', 'model.onnx'), entry.onnx);
    }
    if (entry.config) writeFileSync(path.join(dir, 'config.json'), JSON.stringify(entry.config));
    else if (entry.from && existsSync(path.join(entry.from, 'config.json'))) copyFileSync(path.join(entry.from, 'config.json'), path.join(dir, 'config.json'));
  }
  return { root, remove: () => rmSync(root, { recursive: true, force: true }) };
}

/** A batched model with a BOOL input: y[N,3] = not x[N,3]. No shipped model takes BOOL. */
export function boolNotModel(): Uint8Array {
  return encodeModel({
    name: 'bool_not',
    inputs: [valueInfo('x', ElemType.BOOL, ['batch', 3])],
    outputs: [valueInfo('y', ElemType.BOOL, ['batch', 3])],
    nodes: [node('Not', ['x'], ['y'])],
  });
}

/** The fixture MLP's versions (test/fixtures/served/mlp), as the shipped models are. */
const SERVED_MLP = path.resolve(import.meta.dirname, '..', 'fixtures', 'served', 'mlp');

/** A repository of its own holding these versions of the fixture MLP, with its config.json. */
export function servedMlpRepo(versions: readonly string[]): TempModelRepo {
  const repo = tempModelRepo({});
  for (const v of versions) cpSync(path.join(SERVED_MLP, v), path.join(repo.root, 'mlp', v), { recursive: true, dereference: true });
  cpSync(path.join(SERVED_MLP, 'config.json'), path.join(repo.root, 'mlp', 'config.json'));
  return repo;
}
