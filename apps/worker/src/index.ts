export * from './batch-runner.js';
export * from './model-worker.js';
export * from './worker.js';
export * from './metrics.js';
