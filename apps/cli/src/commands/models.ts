import type { Command } from 'commander';
import type { TensorSpec } from '@infer/sdk';
import type { CliContext } from '../io.js';
import { printJson, printTable } from '../output.js';

const spec = (t: TensorSpec) => `${t.name}:${t.datatype}[${t.shape.join(',')}]`;

export function registerModels(program: Command, ctx: CliContext): void {
  const models = program.command('models').description('the models the platform serves');

  models
    .command('list')
    .description('list every model with its versions and tensors')
    .option('--json', 'print the models as JSON')
    .action(async (opts: { json?: boolean }) => {
      const list = await ctx.client().models.list();
      if (opts.json) return printJson(ctx.stdout, list);
      printTable(
        ctx.stdout,
        ['NAME', 'VERSIONS', 'DEFAULT', 'MAX_BATCH', 'INPUTS', 'OUTPUTS'],
        list.map((m) => [
          m.name,
          m.versions.join(','),
          m.default_version,
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
}
