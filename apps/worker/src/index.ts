export * from './interactive/interactive-worker.js';
export * from './interactive/microbatch.js';
export * from './worker.js';
export * from './metrics.js';
export * from './sweeper.js';
export * from './bulk/bulk-worker.js';
