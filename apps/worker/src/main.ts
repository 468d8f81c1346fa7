import { runProcess } from '@infer/lifecycle';
import { createWorker } from './worker.js';

runProcess({
  name: 'worker',
  start: (config, logger) => createWorker(config, logger),
  // Jobs not finished by the deadline are not lost: their locks lapse and
  // another worker's stalled check requeues them.
  shutdownDeadlineMs: 30_000,
  shuttingDownMessage: 'shutting down: finishing the batches in hand',
});
