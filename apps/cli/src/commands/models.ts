import { InvalidArgumentError, type Command } from 'commander';
import type { ModelDescription, ModelEvent, Rollout, RoutingWeights, StartRolloutParams, TensorSpec } from '@infer/sdk';
import { CommandError, UsageError, type CliContext } from '../io.js';
import { printJson, printTable } from '../output.js';
import { modelVersion, pageLimit, positiveInt, positiveNumber, seconds } from '../parsers.js';

const spec = (t: TensorSpec) => `${t.name}:${t.datatype}[${t.shape.join(',')}]`;

/** `2=90,3=10`, highest weight first. */
const routingText = (weights: RoutingWeights) =>
  Object.entries(weights)
    .sort(([va, a], [vb, b]) => b - a || Number(va) - Number(vb))
    .map(([v, w]) => `${v}=${w}`)
    .join(',') || '-';

/** `1:ready,2:draining,3:loading`. */
const statesText = (m: ModelDescription) => m.versions_detail.map((d) => `${d.version}:${d.state}`).join(',') || '-';

/** The model's routing and each version's state, as the admin commands answer them. */
function printModel(ctx: CliContext, m: ModelDescription): void {
  ctx.stdout.write(`model ${m.name}: routing ${routingText(m.routing)} (${m.routing_source})\n`);
  printTable(
    ctx.stdout,
    ['VERSION', 'STATE', 'WEIGHT', 'WORKERS', 'ERROR'],
    m.versions_detail.map((d) => [d.version, d.state, String(m.routing[d.version] ?? 0), String(d.workers_ready), d.error ?? '']),
  );
}

function printRollouts(ctx: CliContext, rollouts: Rollout[]): void {
  printTable(
    ctx.stdout,
    ['ID', 'VERSION', 'STATE', 'STEP', 'STEPS', 'STARTED', 'ENDED', 'REASON'],
    rollouts.map((r) => [
      r.id,
      r.version,
      r.state,
      `${r.step + 1}/${r.steps.length} (${r.steps[r.step] ?? '?'}%)`,
      r.steps.join(','),
      r.started_at,
      r.ended_at ?? '-',
      r.reason ?? '',
    ]),
  );
}

function printEvents(ctx: CliContext, events: ModelEvent[]): void {
  printTable(
    ctx.stdout,
    ['AT', 'TYPE', 'ACTOR', 'DATA', 'ID'],
    events.map((e) => [e.at, e.type, e.actor, JSON.stringify(e.data), e.id]),
  );
}

/** `2=90` → ['2', 90]: a version and an integer weight. */
function weightArg(value: string): [string, number] {
  const m = /^([1-9][0-9]*)=([0-9]+)$/.exec(value);
  if (!m) throw new UsageError(`routing weights are <version>=<weight> (e.g. 2=90 3=10), got "${value}"`);
  return [m[1]!, Number(m[2])];
}

/** `10,50,100` → [10, 50, 100]. */
function stepsList(value: string): number[] {
  const steps = value.split(',').map((s) => s.trim());
  if (steps.some((s) => !/^[1-9][0-9]*$/.test(s))) throw new InvalidArgumentError('expected percentages separated by commas, e.g. 10,50,100');
  const percents = steps.map(Number);
  // The API's rule, checked before any request: rising, ending at 100.
  if (percents.some((n, i) => n > 100 || (i > 0 && n <= percents[i - 1]!)) || percents[percents.length - 1] !== 100) {
    throw new InvalidArgumentError('expected rising percentages ending at 100, e.g. 10,50,100');
  }
  return percents;
}

function fraction(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError('expected a number from 0 to 1');
  return n;
}

export function registerModels(program: Command, ctx: CliContext): void {
  const models = program
    .command('models')
    .description('the models the platform serves, and their lifecycle (routing, versions, rollouts: admin key)');

  models
    .command('list')
    .description("list every model with its versions' states, its routing and its tensors")
    .option('--json', 'print the models as JSON')
    .action(async (opts: { json?: boolean }) => {
      const list = await ctx.client().models.list();
      if (opts.json) return printJson(ctx.stdout, list);
      printTable(
        ctx.stdout,
        ['NAME', 'VERSIONS', 'ROUTING', 'SOURCE', 'MAX_BATCH', 'INPUTS', 'OUTPUTS'],
        list.map((m) => [
          m.name,
          statesText(m),
          routingText(m.routing),
          m.routing_source,
          String(m.max_batch_size),
          m.inputs.map(spec).join(' '),
          m.outputs.map(spec).join(' '),
        ]),
      );
    });

  models
    .command('get')
    .description('show one model as JSON')
    .argument('<name>', 'model name')
    .action(async (name: string) => {
      printJson(ctx.stdout, await ctx.client().models.get(name));
    });

  // --- lifecycle: each of these sends the admin key ------------------------

  models
    .command('routing')
    .description("set the routing of a model's unpinned jobs (weights sum to 100), or go back to the default (admin key)")
    .argument('<name>', 'model name')
    .argument('[weights...]', 'version=weight pairs, e.g. 2=90 3=10')
    .option('--default', 'the default routing: the highest ready version takes 100')
    .option('--json', 'print the model as JSON')
    .action(async (name: string, args: string[], opts: { default?: boolean; json?: boolean }) => {
      if (opts.default && args.length > 0) throw new UsageError('give either weights or --default, not both');
      if (!opts.default && args.length === 0) throw new UsageError('give the weights (e.g. 2=90 3=10) or --default');
      let weights: RoutingWeights | null = null;
      if (!opts.default) {
        weights = {};
        for (const [version, weight] of args.map(weightArg)) {
          if (version in weights) throw new UsageError(`version ${version} is given twice`);
          weights[version] = weight;
        }
      }
      const model = await ctx.adminClient().models.setRouting(name, weights);
      if (opts.json) return printJson(ctx.stdout, model);
      printModel(ctx, model);
    });

  for (const action of ['load', 'unload'] as const) {
    models
      .command(action)
      .description(
        action === 'load'
          ? "load a version from the model repository's folder (again, after an unload); it is loading, then ready (admin key)"
          : 'unload a version, keeping its files: draining (queued jobs finish, no new ones), then gone (admin key)',
      )
      .argument('<name>', 'model name')
      .argument('<version>', 'model version', modelVersion)
      .option('--json', 'print the model as JSON')
      .action(async (name: string, version: string, opts: { json?: boolean }) => {
        const models = ctx.adminClient().models;
        const model = action === 'load' ? await models.load(name, version) : await models.unload(name, version);
        if (opts.json) return printJson(ctx.stdout, model);
        printModel(ctx, model);
      });
  }

  models
    .command('rollout')
    .description("start a guarded rollout: move the model's traffic to a version step by step, rolled back if it does worse (admin key)")
    .argument('<name>', 'model name')
    .argument('<version>', 'the version to roll out (ready)', modelVersion)
    .requiredOption('--steps <percents>', 'percentages of the traffic, rising, ending at 100, e.g. 10,50,100', stepsList)
    .requiredOption('--step-seconds <seconds>', 'how long each step runs before it is judged', seconds)
    .option('--max-error-rate <fraction>', 'roll back when more than this share of its jobs fail in a step (server default 0.01)', fraction)
    .option('--max-p50-latency-ratio <ratio>', "roll back when its p50 latency is over this many times the replaced versions' (server default 2)", positiveNumber)
    .action(async (name: string, version: string, opts: { steps: number[]; stepSeconds: number; maxErrorRate?: number; maxP50LatencyRatio?: number }) => {
      const params: StartRolloutParams = { version, steps: opts.steps, step_seconds: opts.stepSeconds };
      if (opts.maxErrorRate !== undefined) params.max_error_rate = opts.maxErrorRate;
      if (opts.maxP50LatencyRatio !== undefined) params.max_p50_latency_ratio = opts.maxP50LatencyRatio;
      printJson(ctx.stdout, await ctx.adminClient().models.startRollout(name, params));
    });

  models
    .command('rollouts')
    .description("list a model's rollouts, newest first, or show one by id (admin key)")
    .argument('<name>', 'model name')
    .argument('[id]', 'a rollout id: print that rollout as JSON')
    .option('--json', 'print the rollouts as JSON')
    .action(async (name: string, id: string | undefined, opts: { json?: boolean }) => {
      const admin = ctx.adminClient();
      if (id !== undefined) return printJson(ctx.stdout, await admin.models.rollout(name, id));
      const rollouts = await admin.models.rollouts(name);
      if (opts.json) return printJson(ctx.stdout, rollouts);
      printRollouts(ctx, rollouts);
    });

  models
    .command('rollout-cancel')
    .description('cancel a running rollout (by default the one running): the routing goes back to what it was before it (admin key)')
    .argument('<name>', 'model name')
    .argument('[id]', 'the rollout id (default: the running one)')
    .action(async (name: string, id: string | undefined) => {
      const admin = ctx.adminClient();
      let target = id;
      if (target === undefined) {
        target = (await admin.models.rollouts(name)).find((r) => r.state === 'running')?.id;
        if (target === undefined) throw new CommandError(`no rollout of model "${name}" is running`);
      }
      printJson(ctx.stdout, await admin.models.cancelRollout(name, target));
    });

  models
    .command('events')
    .description("a model's events log, newest first: routing changes, versions loaded and unloaded, rollout steps (admin key)")
    .argument('<name>', 'model name')
    .option('--limit <n>', 'events per page, 1-100 (default 20)', pageLimit)
    .option('--after <id>', 'start after this event (older ones)')
    .option('--json', 'print the page as JSON ({object, data, has_more})')
    .action(async (name: string, opts: { limit?: number; after?: string; json?: boolean }) => {
      const page = await ctx.adminClient().models.events(name, { limit: opts.limit, after: opts.after });
      if (opts.json) return printJson(ctx.stdout, page);
      printEvents(ctx, page.data);
      const last = page.data.at(-1);
      if (page.has_more && last) ctx.stderr.write(`more: --after ${last.id}\n`);
    });
}
