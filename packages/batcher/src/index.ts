export * from './clock.js';
export * from './batcher.js';
