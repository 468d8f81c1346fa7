export * from './fast-histogram.js';
