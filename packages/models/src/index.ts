export * from './model-config.js';
export * from './specs.js';
export * from './model-repository.js';
export * from './runtime.js';
