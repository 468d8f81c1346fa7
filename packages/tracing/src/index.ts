export { Tracing, spanTime, type TracingOptions } from './tracing.js';
export { BullmqTelemetry } from './bullmq-telemetry.js';
export { contextOfTraceparent, formatTraceparent, parseTraceparent } from './traceparent.js';
