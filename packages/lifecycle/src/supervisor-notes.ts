/**
 * What an app tells the process that started it, when that process opened an
 * IPC channel to it (`npm start`'s scripts/start.ts does; a container runtime
 * or `npm run start:worker` does not, and then nothing is sent). As systemd's
 * `sd_notify` READY=1 and STOPPING=1: a supervisor restarts an app that dies
 * after it was ready and before it began stopping (a crash), and leaves alone
 * one that never started (a bad model repository, a port in use: a restart
 * would fail the same way) or one that was asked to stop.
 */
export type SupervisorNote = { app: 'ready'; port?: number } | { app: 'stopping' };

/** Whether a message from a child is one of these notes. */
export function isSupervisorNote(message: unknown): message is SupervisorNote {
  return typeof message === 'object' && message !== null && ((message as { app?: unknown }).app === 'ready' || (message as { app?: unknown }).app === 'stopping');
}

/**
 * Send a note to the parent, if one listens. The channel is unref'd first so
 * that it never keeps the app alive, and a send that fails (the parent gone)
 * is dropped: the note is advice, the app runs the same without it.
 */
export function tellSupervisor(note: SupervisorNote): void {
  if (!process.send || !process.connected) return;
  process.channel?.unref();
  try {
    process.send(note, undefined, {}, () => undefined);
  } catch {
    // The channel closed between the check and the send.
  }
}
