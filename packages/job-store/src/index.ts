export * from './job-record.js';
export * from './job-store.js';
export * from './job-waiters.js';
export * from './envelope-queue.js';
export * from './completed-events-outbox.js';
export * from './version-work.js';
export { FINISH_COMMAND, MARK_RUNS_COMMAND } from './redis-scripts.js';
export { MESSAGE_RECORD_BYTES, READS_BY_NAME_SUFFIX } from './scripts.js';
