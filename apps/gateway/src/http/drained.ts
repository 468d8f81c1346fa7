import type { ServerResponse } from 'node:http';

/**
 * Resolves when a response's socket can take more writes, or the response
 * is gone: what a streamed answer waits on after `write` says its buffer is
 * full. The connection's own close counts too: a pipelined response still
 * queued behind an earlier one gets no 'close' of its own when the client
 * goes (see `gone`).
 */
export function drained(res: ServerResponse): Promise<void> {
  const socket = res.req.socket;
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      socket.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
    socket.on('close', done);
  });
}

/** Whether a streamed answer has no one left to take it: the response or its connection is gone. */
export const gone = (res: ServerResponse): boolean => res.destroyed || res.req.socket.destroyed;
