export * from './datatypes.js';
export * from './tensor-spec.js';
export * from './nested.js';
export * from './job.js';
export * from './batch.js';
export * from './queues.js';
export * from './lifecycle.js';
export * from './json-object.js';
