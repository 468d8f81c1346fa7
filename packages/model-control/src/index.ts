export * from './control-store.js';
export * from './control-view.js';
export * from './routing.js';
export * from './rollout.js';
export * from './repository-watcher.js';
