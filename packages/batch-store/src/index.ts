export * from './batch-record.js';
export * from './result-lines.js';
export * from './batch-store.js';
export * from './chunk-result.js';
