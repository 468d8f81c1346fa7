import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { NAME_RE, VERSION_RE, type ModelInfo, type SharedDim, type TensorSpec } from '@infer/contract';
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
  /** Why a model that looks batched (every first dimension dynamic) is not: see deriveSpecs. */
  unbatchedBecause?: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** Dimensions its inputs share by name, which a job must give one length (specs.ts, sharedDimMismatch); absent when none. */
  sharedDims?: SharedDim[];
  /** 0 when not batched. */
  maxBatchSize: number;
  maxDelayMs: number;
}

export interface LoadOptions {
  /** Load only these models (a worker serving a subset); empty or absent means all. */
  only?: readonly string[];
  /**
   * `run` (a worker): sessions fully optimised for inference. `describe` (a
   * gateway, which only validates against the specs and never runs a model):
   * sessions built without graph optimisation, several times faster to
   * create. Building a session holds the event loop (ONNX Runtime does it on
   * the calling thread), so a gateway that loads a new version barely pauses.
   * @default 'run'
   */
  purpose?: 'run' | 'describe';
}

/** A version in the repository's folder that could not be loaded (a corrupt file, an unsupported model). */
export interface FailedVersion {
  name: string;
  version: string;
  error: string;
}

/** What a rescan found changed in the folder. */
export interface RepositoryChanges {
  /** Versions loaded now: new folders (or ones back). */
  loaded: ModelVersion[];
  /** New versions that could not be loaded. */
  failed: FailedVersion[];
  /** Loaded versions whose folder is gone: still loaded until `release`d (their jobs drain first). */
  removed: ModelVersion[];
  /** Versions that had failed and whose folder is gone: a new one there is a new try, its failure news again. */
  failedGone: FailedVersion[];
  /**
   * Loaded versions whose model.onnx or config.json changed on disk since they were loaded (each change
   * told once). They keep running what they loaded: a version's files are read once, as every process
   * started later reads them, so a change is shipped as a new version number.
   */
  changed: ModelVersion[];
}

/** What a rescan tells its caller while it runs. */
export interface RescanHooks {
  /** A version's load begins (a large model can take seconds): it reads as `loading()` until it ends. */
  loading?(name: string, version: string): void;
}

const key = (name: string, version: string) => `${name}\0${version}`;

/**
 * The model repository, laid out as the contract says:
 * `<root>/<name>/<version>/model.onnx`, versions positive integers (the
 * highest is the default), optional `<root>/<name>/config.json`.
 *
 * It is live: `rescan()` looks at the folder again, loads versions that
 * appeared (each with its own ONNX Runtime session, one at a time, while
 * the others keep serving), records those that fail to load (with why:
 * nothing else is affected), and reports versions whose folder is gone,
 * which stay loaded until the caller `release`s them (a worker first drains
 * their jobs). A version that failed is tried again when its file changes.
 */
export class ModelRepository {
  private readonly failures = new Map<string, FailedVersion & { mtimeMs: number }>();
  private readonly gone = new Set<string>();
  /**
   * What each loaded version was loaded from: "<model.onnx's fileIdentity> <config.json's mtime>". A folder
   * put back is the same model only with the same file; files changed since are reported (`changed`).
   */
  private readonly loadedFrom = new Map<string, string>();
  /** The last change of a loaded version's files reported, in loadedFrom's form: each is reported once. */
  private readonly changedTold = new Map<string, string>();
  /** Versions a rescan is loading now. */
  private readonly loadingNow = new Map<string, { name: string; version: string }>();

  private constructor(
    private readonly root: string,
    private readonly only: ReadonlySet<string> | undefined,
    private readonly models: Map<string, ModelVersion[]>,
    private readonly purpose: 'run' | 'describe',
  ) {}

  static async load(root: string, options: LoadOptions = {}): Promise<ModelRepository> {
    if (!existsSync(root) || !statSync(root).isDirectory()) {
      // `npm run models` writes ./models: worth saying only when that is the folder missing.
      const shipped = path.resolve(root) === path.resolve('models');
      throw new Error(`MODEL_REPOSITORY ${path.resolve(root)} is not a folder${shipped ? ' (run "npm run models" to build the shipped models)' : ''}`);
    }
    const only = options.only?.length ? new Set(options.only) : undefined;
    const repo = new ModelRepository(root, only, new Map(), options.purpose ?? 'run');
    await repo.rescan();
    if (only) {
      const missing = [...only].filter((n) => !repo.models.has(n) && ![...repo.failures.values()].some((f) => f.name === n));
      if (missing.length) throw new Error(`WORKER_MODELS names models not in ${root}: ${missing.join(', ')}`);
    }
    return repo;
  }

  /**
   * Look at the folder again: load what appeared, report what failed and
   * what is gone. `skip` names versions not to load though their folder is
   * there (unloaded by an admin, files kept).
   */
  async rescan(skip: (name: string, version: string) => boolean = () => false, hooks: RescanHooks = {}): Promise<RepositoryChanges> {
    const changes: RepositoryChanges = { loaded: [], failed: [], removed: [], failedGone: [], changed: [] };
    const present = new Map<string, { name: string; version: string; file: string; dir: string }>();
    for (const name of safeReaddir(this.root).sort()) {
      const dir = path.join(this.root, name);
      if (!NAME_RE.test(name) || !isDir(dir) || (this.only && !this.only.has(name))) continue;
      for (const version of safeReaddir(dir).filter((v) => VERSION_RE.test(v))) {
        const file = path.join(dir, version, 'model.onnx');
        if (existsSync(file)) present.set(key(name, version), { name, version, file, dir });
      }
    }
    // Gone: loaded versions whose file is no longer there.
    for (const v of this.all()) {
      const k = key(v.name, v.version);
      if (!present.has(k) && !this.gone.has(k)) {
        this.gone.add(k);
        changes.removed.push(v);
      }
    }
    for (const [k, f] of [...this.failures]) {
      if (present.has(k)) continue;
      this.failures.delete(k);
      changes.failedGone.push({ name: f.name, version: f.version, error: f.error });
    }
    // New, back, or failed before and changed since.
    const wanted = [...present.values()].sort((a, b) => a.name.localeCompare(b.name) || Number(a.version) - Number(b.version));
    for (const p of wanted) {
      const k = key(p.name, p.version);
      if (this.gone.has(k)) {
        // Its folder is back before it was released: with the same file it simply stays. With another one it
        // stays gone (it drains and is released), and the look after its release loads the new file: one
        // version number must not run the old model here while a worker started since runs the new one.
        if (sameFile(this.loadedFrom.get(k), fileIdentity(p.file))) this.gone.delete(k);
        continue;
      }
      const loadedHere = this.find(p.name, p.version);
      if (loadedHere) {
        const now = `${fileIdentity(p.file) ?? ''} ${configMtime(p.dir)}`;
        if (now !== (this.changedTold.get(k) ?? this.loadedFrom.get(k))) {
          this.changedTold.set(k, now);
          changes.changed.push(loadedHere);
        }
        continue;
      }
      if (skip(p.name, p.version)) continue;
      // What it failed with (its file, and the model's config.json): a change to either is worth another try.
      // A folder that went while this look ran is skipped: the next look sees it gone.
      let mtimeMs: number;
      try {
        mtimeMs = statSync(p.file).mtimeMs + configMtime(p.dir);
      } catch {
        continue;
      }
      const failedBefore = this.failures.get(k);
      if (failedBefore && failedBefore.mtimeMs === mtimeMs) continue;
      this.loadingNow.set(k, { name: p.name, version: p.version });
      hooks.loading?.(p.name, p.version);
      try {
        const identity = `${fileIdentity(p.file) ?? ''} ${configMtime(p.dir)}`;
        const loaded = await loadVersion(p.name, p.version, p.file, readConfig(p.dir), this.purpose);
        this.failures.delete(k);
        this.loadedFrom.set(k, identity);
        const list = this.models.get(p.name) ?? [];
        list.push(loaded);
        list.sort((a, b) => Number(a.version) - Number(b.version));
        this.models.set(p.name, list);
        changes.loaded.push(loaded);
      } catch (err) {
        const failed = { name: p.name, version: p.version, error: (err as Error).message };
        this.failures.set(k, { ...failed, mtimeMs });
        changes.failed.push(failed);
      } finally {
        this.loadingNow.delete(k);
      }
    }
    return changes;
  }

  /** Unload a version (after its jobs have drained): its session is released. */
  async release(name: string, version: string): Promise<void> {
    const list = this.models.get(name);
    const v = list?.find((m) => m.version === version);
    if (!list || !v) return;
    list.splice(list.indexOf(v), 1);
    if (list.length === 0) this.models.delete(name);
    this.gone.delete(key(name, version));
    this.loadedFrom.delete(key(name, version));
    this.changedTold.delete(key(name, version));
    await v.session.release().catch(() => undefined);
  }

  /** Forget past failures, so the next rescan tries those versions again. */
  retryFailed(): void {
    for (const f of this.failures.values()) f.mtimeMs = -1;
  }

  /** The versions being loaded at this moment (by a rescan still running). */
  loading(): Array<{ name: string; version: string }> {
    return [...this.loadingNow.values()];
  }

  /** Versions in the folder that could not be loaded, with why. */
  failed(): FailedVersion[] {
    return [...this.failures.values()].map(({ name, version, error }) => ({ name, version, error }));
  }

  /** Whether `<root>/<name>/` is a model folder this repository would serve. */
  hasModelFolder(name: string): boolean {
    return NAME_RE.test(name) && (!this.only || this.only.has(name)) && isDir(path.join(this.root, name));
  }

  /**
   * The models with a folder in the repository now, loaded or not: one whose
   * every version was let go (unloaded, or its folder removed) is still one
   * an admin may load again, or whose folder may come back.
   */
  folderNames(): string[] {
    return safeReaddir(this.root).filter((name) => this.hasModelFolder(name)).sort();
  }

  /** Whether `<root>/<name>/<version>/model.onnx` is there (loaded or not). */
  inFolder(name: string, version: string): boolean {
    if (!NAME_RE.test(name) || !VERSION_RE.test(version) || (this.only && !this.only.has(name))) return false;
    return existsSync(path.join(this.root, name, version, 'model.onnx'));
  }

  /** Loaded versions whose folder is gone (not yet released). */
  isGone(name: string, version: string): boolean {
    return this.gone.has(key(name, version));
  }

  /** A loaded version, or undefined. */
  find(name: string, version: string): ModelVersion | undefined {
    return this.models.get(name)?.find((v) => v.version === version);
  }

  /** Whether `name` is one of `names()`: a model with a loaded or failed version (no list built). */
  has(name: string): boolean {
    if (this.models.has(name)) return true;
    for (const f of this.failures.values()) if (f.name === name) return true;
    return false;
  }

  /** Names of the models with at least one loaded or failed version. */
  names(): string[] {
    return [...new Set([...this.models.keys(), ...this.failed().map((f) => f.name)])].sort();
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

  /** The version asked for, or the default (highest) one; 404s as the contract names them. */
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

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function isDir(dir: string): boolean {
  try {
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

/** A file's identity (inode, size, mtime): another file, or the same one rewritten, has another. Undefined when it cannot be read. */
function fileIdentity(file: string): string | undefined {
  try {
    const st = statSync(file);
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return undefined;
  }
}

/** Whether a version loaded as `loaded` ("<file identity> <config.json mtime>") was loaded from the file whose identity is `file`. */
function sameFile(loaded: string | undefined, file: string | undefined): boolean {
  return file !== undefined && loaded !== undefined && loaded.split(' ')[0] === file;
}

/** config.json's modification time, 0 when there is none: part of what a failed version is retried on. */
function configMtime(dir: string): number {
  try {
    return statSync(path.join(dir, 'config.json')).mtimeMs;
  } catch {
    return 0;
  }
}

function readConfig(dir: string): ModelConfigFile {
  const file = path.join(dir, 'config.json');
  if (!existsSync(file)) return {};
  // Errors name the file within the repository: they reach clients (a version's `error`), server paths must not.
  const shown = `${path.basename(dir)}/config.json`;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${shown}: not valid JSON (${(err as Error).message})`);
  }
  const parsed = ModelConfigFile.safeParse(raw);
  if (!parsed.success) throw new Error(`${shown}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

async function loadVersion(name: string, version: string, file: string, config: ModelConfigFile, purpose: 'run' | 'describe'): Promise<ModelVersion> {
  // Read off the event loop; only building the session holds it (ONNX Runtime does that synchronously).
  // Named within the repository, as readConfig's errors are: this one reaches clients too, a server path must not.
  const bytes = await readFile(file).catch((err: NodeJS.ErrnoException) => {
    throw new Error(`${version}/model.onnx: could not be read (${err.code ?? 'read failed'})`);
  });
  const options: ort.InferenceSession.SessionOptions =
    purpose === 'describe'
      ? { graphOptimizationLevel: 'disabled', intraOpNumThreads: 1, logSeverityLevel: 4 }
      : {
          graphOptimizationLevel: 'all',
          // A run that throws (a poison input) would also print ONNX Runtime's own
          // error line to stderr, once per bisection step; the worker reports it
          // instead, as the job's error and in its log, with the job's id.
          logSeverityLevel: 4,
          ...(config.intra_op_num_threads ? { intraOpNumThreads: config.intra_op_num_threads } : {}),
          extra: { session: { intra_op: { allow_spinning: config.allow_spinning ? '1' : '0' } } },
        };
  const session = await ort.InferenceSession.create(bytes, options);
  const specs = deriveSpecs(
    session.inputMetadata as readonly OrtValueMetadata[],
    session.outputMetadata as readonly OrtValueMetadata[],
    { unbatched: config.max_batch_size === 0 || config.batched === false, batchAsked: config.batched === true },
  );
  return {
    name,
    version,
    file,
    session,
    batched: specs.batched,
    ...(specs.unbatchedBecause ? { unbatchedBecause: specs.unbatchedBecause } : {}),
    inputs: specs.inputs,
    outputs: specs.outputs,
    ...(specs.sharedDims.length > 0 ? { sharedDims: specs.sharedDims } : {}),
    maxBatchSize: specs.batched ? (config.max_batch_size ?? DEFAULT_MAX_BATCH_SIZE) : 0,
    maxDelayMs: config.max_delay_ms ?? DEFAULT_MAX_DELAY_MS,
  };
}
