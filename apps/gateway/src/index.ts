export * from './app.js';
export * from './gateway.js';
export * from './metrics.js';
