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

/**
 * Write a streamed answer's pieces in turn, each taken only when the one
 * before is written: after a piece the socket took, the event loop's other
 * work runs first (a piece is printed as it is taken, and printing is what
 * would hold other requests up); after one it did not, its drain. Stops
 * when no one is left to take them. True when every piece was written (the
 * caller ends the answer); what a piece throws is the caller's.
 */
export async function writePieces(res: ServerResponse, pieces: Iterable<string | Buffer> | AsyncIterable<string | Buffer>): Promise<boolean> {
  for await (const piece of pieces) {
    if (gone(res)) return false;
    if (res.write(piece)) await new Promise<void>((resolve) => setImmediate(resolve));
    else await drained(res);
  }
  return !gone(res);
}
