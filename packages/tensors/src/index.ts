export * from './typed-arrays.js';
export * from './shape.js';
export * from './decode.js';
export * from './encode.js';
export * from './stack.js';
export * from './base64.js';
export * from './json.js';
export * from './lift-base64.js';
