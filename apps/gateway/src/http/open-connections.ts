import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * The server's connections and how many answers each has in progress, so a
 * shutdown can close every connection that is not being answered.
 *
 * Node's own `closeIdleConnections()` misses one kind: a connection that is
 * open but has not sent a whole request yet (a client that opens a spare
 * connection ahead of need, as undici does after an aborted request and
 * browsers do to preconnect). Node counts it as a request in progress, so
 * `server.close()` waited for it until the client let go or headersTimeout
 * (66 s) passed: a gateway shutdown held by a connection that asked nothing.
 */
export class OpenConnections {
  /** Each open connection → answers in progress on it (more than one only when a client pipelines). */
  readonly #answering = new Map<Socket, number>();

  /** Follow `server`'s connections; `counted` wraps the request listener (and the checkContinue one). */
  constructor(server: Server) {
    server.on('connection', (socket: Socket) => {
      this.#answering.set(socket, 0);
      socket.once('close', () => this.#answering.delete(socket));
    });
  }

  /** Count `res` as in progress on its connection until it closes (sent, or the client gone). */
  counted(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket;
    const n = this.#answering.get(socket);
    if (n === undefined) return;
    this.#answering.set(socket, n + 1);
    res.once('close', () => {
      const left = this.#answering.get(socket);
      if (left !== undefined) this.#answering.set(socket, left - 1);
    });
  }

  /** Close every connection with no answer in progress (idle keep-alive, or nothing asked yet). */
  closeUnanswered(): void {
    for (const [socket, n] of this.#answering) if (n === 0) socket.destroy();
  }
}
