/**
 * BullMQ job locks kept by a thread of the process's own: through model
 * runs that hold the event loop, and no longer than WORKER_MAX_RUN_MS of a
 * blocked one. Used by every consumer that takes BullMQ jobs in a worker
 * process: interactive envelopes, bulk chunks, webhook deliveries.
 */
export { LockKeeper } from './lock-keeper.js';
export { DEFAULT_MAX_RUN_MS, LockRenewal, type RenewedQueue } from './lock-renewal.js';
export { mainThreadBeat } from './main-thread-beat.js';
