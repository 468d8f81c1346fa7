export * from './fast-histogram.js';
export * from './process-registry.js';
