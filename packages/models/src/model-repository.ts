import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { NAME_RE, type ModelInfo, type TensorSpec } from '@infer/contract';
import { notFound } from '@infer/errors';
import { DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_DELAY_MS, ModelConfigFile } from './model-config.js';
import { deriveSpecs, type OrtValueMetadata } from './specs.js';

/** One loaded version of one model: its session and everything known about it. */
export interface ModelVersion {
  name: string;
  version: string;
  file: string;
  session: ort.InferenceSession;
  batched: boolean;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** 0 when not batched. */
  maxBatchSize: number;
  maxDelayMs: number;
}

export interface LoadOptions {
  /** Load only these models (a worker serving a subset); empty or absent means all. */
  only?: readonly string[];
}

/**
 * The model repository, laid out as API.md says:
 * `<root>/<name>/<version>/model.onnx`, versions positive integers (the
 * highest is the default), optional `<root>/<name>/config.json`.
 * Loaded once at start; every version gets its own ONNX Runtime session.
 */
export class ModelRepository {
  private constructor(private readonly models: Map<string, ModelVersion[]>) {}

  static async load(root: string, options: LoadOptions = {}): Promise<ModelRepository> {
    if (!existsSync(root) || !statSync(root).isDirectory()) {
      throw new Error(`MODEL_REPOSITORY ${path.resolve(root)} is not a folder (run "npm run models" to build the shipped models)`);
    }
    const only = options.only?.length ? new Set(options.only) : undefined;
    const models = new Map<string, ModelVersion[]>();
    for (const name of readdirSync(root).sort()) {
      const dir = path.join(root, name);
      if (!NAME_RE.test(name) || !statSync(dir).isDirectory() || (only && !only.has(name))) continue;
      const config = readConfig(dir);
      const versions = readdirSync(dir)
        .filter((v) => /^[1-9][0-9]*$/.test(v) && existsSync(path.join(dir, v, 'model.onnx')))
        .sort((a, b) => Number(a) - Number(b));
      const loaded: ModelVersion[] = [];
      for (const version of versions) loaded.push(await loadVersion(name, version, path.join(dir, version, 'model.onnx'), config));
      if (loaded.length > 0) models.set(name, loaded);
    }
    if (only) {
      const missing = [...only].filter((n) => !models.has(n));
      if (missing.length) throw new Error(`WORKER_MODELS names models not in ${root}: ${missing.join(', ')}`);
    }
    return new ModelRepository(models);
  }

  /** Every loaded version of every model. */
  all(): ModelVersion[] {
    return [...this.models.values()].flat();
  }

  list(): ModelInfo[] {
    return [...this.models.keys()].map((name) => this.info(name));
  }

  info(name: string): ModelInfo {
    const versions = this.versionsOf(name);
    const def = versions[versions.length - 1]!;
    return {
      name,
      versions: versions.map((v) => v.version),
      default_version: def.version,
      inputs: def.inputs,
      outputs: def.outputs,
      max_batch_size: def.maxBatchSize,
      max_delay_ms: def.maxDelayMs,
    };
  }

  /** The version asked for, or the default (highest) one; 404s as API.md names them. */
  resolve(name: string, version?: string): ModelVersion {
    const versions = this.versionsOf(name);
    if (version === undefined) return versions[versions.length - 1]!;
    const found = versions.find((v) => v.version === version);
    if (!found) throw notFound('version_not_found', `Model "${name}" has no version "${version}" (versions: ${versions.map((v) => v.version).join(', ')})`);
    return found;
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.all().map((v) => v.session.release()));
  }

  private versionsOf(name: string): ModelVersion[] {
    const versions = this.models.get(name);
    if (!versions) throw notFound('model_not_found', `No model named "${name}"`);
    return versions;
  }
}

function readConfig(dir: string): ModelConfigFile {
  const file = path.join(dir, 'config.json');
  if (!existsSync(file)) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
  const parsed = ModelConfigFile.safeParse(raw);
  if (!parsed.success) throw new Error(`${file}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

async function loadVersion(name: string, version: string, file: string, config: ModelConfigFile): Promise<ModelVersion> {
  const session = await ort.InferenceSession.create(file, {
    graphOptimizationLevel: 'all',
    // A run that throws (a poison input) would also print ONNX Runtime's own
    // error line to stderr, once per bisection step; the worker reports it
    // instead, as the job's error and in its log, with the job's id.
    logSeverityLevel: 4,
    ...(config.intra_op_num_threads ? { intraOpNumThreads: config.intra_op_num_threads } : {}),
    extra: { session: { intra_op: { allow_spinning: config.allow_spinning ? '1' : '0' } } },
  });
  const specs = deriveSpecs(
    session.inputMetadata as readonly OrtValueMetadata[],
    session.outputMetadata as readonly OrtValueMetadata[],
  );
  return {
    name,
    version,
    file,
    session,
    batched: specs.batched,
    inputs: specs.inputs,
    outputs: specs.outputs,
    maxBatchSize: specs.batched ? (config.max_batch_size ?? DEFAULT_MAX_BATCH_SIZE) : 0,
    maxDelayMs: config.max_delay_ms ?? DEFAULT_MAX_DELAY_MS,
  };
}
