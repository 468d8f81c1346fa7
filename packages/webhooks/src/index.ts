export * from './url-guard.js';
export * from './dns-guard.js';
export * from './signing.js';
export * from './secrets.js';
export * from './delivery.js';
export * from './delivery-log.js';
export * from './events.js';
export * from './delivery-worker.js';
