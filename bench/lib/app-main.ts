/**
 * The gateway or the worker, started as their main.ts start them (through
 * runProcess: config from the environment, graceful SIGTERM), with the
 * createGateway / createWorker options main.ts does not expose because an
 * operator has no use for them: `BENCH_METRICS=off` starts the process with
 * `metrics: false` (nothing counted, no /metrics).
 *
 *   node --import tsx bench/lib/app-main.ts gateway|worker
 *
 * startBenchPlatform's `metrics` option starts both through here; the
 * observability section starts every mode it compares through here, so the
 * modes differ only in what they switch.
 */
import { runProcess } from '@infer/lifecycle';
import { createGateway } from '../../apps/gateway/src/gateway.js';
import { createWorker } from '../../apps/worker/src/worker.js';

const metrics = process.env.BENCH_METRICS !== 'off';
const which = process.argv[2];

if (which === 'gateway') {
  runProcess({
    name: 'gateway',
    async start(config, logger) {
      const gateway = await createGateway(config, logger, { metrics });
      await gateway.listen();
      return gateway;
    },
    shutdownDeadlineMs: 10_000,
  });
} else if (which === 'worker') {
  runProcess({ name: 'worker', start: (config, logger) => createWorker(config, logger, { metrics }), shutdownDeadlineMs: 30_000 });
} else {
  console.error('usage: node --import tsx bench/lib/app-main.ts gateway|worker (BENCH_METRICS=off for metrics off)');
  process.exit(2);
}
