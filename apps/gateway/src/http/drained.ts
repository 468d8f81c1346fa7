import type { ServerResponse } from 'node:http';

/** Resolves when a response's socket can take more writes, or the response is gone: what a streamed answer waits on after `write` says its buffer is full. */
export function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
