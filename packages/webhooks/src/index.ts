export * from './url-guard.js';
