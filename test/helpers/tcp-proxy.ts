import net from 'node:net';
import { TEST_REDIS_URL } from './platform.js';

/** One client connection through the proxy, and what is being done to it. */
interface ProxiedConnection {
  client: net.Socket;
  upstream: net.Socket;
  /** It sent a (P/S)SUBSCRIBE: a pub/sub connection. */
  subscriber: boolean;
  /** Replies from Redis are dropped from now on. */
  swallow: boolean;
  /** Replies from Redis are kept back until then (performance.now()); 0: passed on at once. */
  holdUntil: number;
  held: Buffer[];
}

type Trigger = { marker: string; hit: (conn: ProxiedConnection) => void };

/**
 * A TCP proxy in front of the test Redis, for faults a real network makes:
 * the reply to one command lost with its connection (`swallowAfter`),
 * replies late past a command timeout (`stallAfter`), pub/sub connections
 * cut and their reconnects held for a while (`cutSubscribers`, `release`).
 * Only the connections a test points at it are affected.
 */
export class RedisProxy {
  private readonly server: net.Server;
  private readonly upstreamUrl: URL;
  private readonly conns = new Set<ProxiedConnection>();
  private readonly held: net.Socket[] = [];
  private holding = false;
  private armed: Trigger | undefined;
  port = 0;

  constructor(upstream: string = TEST_REDIS_URL) {
    this.upstreamUrl = new URL(upstream);
    this.server = net.createServer((client) => {
      client.on('error', () => undefined);
      if (this.holding) {
        client.pause();
        this.held.push(client);
      } else this.forward(client);
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  /** A redis:// URL that reaches Redis through the proxy (the upstream's database, if it names one). */
  get url(): string {
    return `redis://127.0.0.1:${this.port}${this.upstreamUrl.pathname}`;
  }

  private forward(client: net.Socket): void {
    const upstream = net.connect(Number(this.upstreamUrl.port || 6379), this.upstreamUrl.hostname);
    const conn: ProxiedConnection = { client, upstream, subscriber: false, swallow: false, holdUntil: 0, held: [] };
    this.conns.add(conn);
    upstream.on('error', () => client.destroy());
    client.on('data', (d: Buffer) => {
      upstream.write(d);
      if (/subscribe/i.test(d.toString('latin1'))) conn.subscriber = true;
      if (this.armed && d.includes(this.armed.marker)) {
        const { hit } = this.armed;
        this.armed = undefined;
        hit(conn);
      }
    });
    upstream.on('data', (d: Buffer) => {
      if (conn.swallow) return;
      if (conn.holdUntil) conn.held.push(d);
      else client.write(d);
    });
    const gone = () => {
      this.conns.delete(conn);
      client.destroy();
      upstream.destroy();
    };
    client.once('close', gone);
    upstream.once('close', gone);
    client.resume();
  }

  /**
   * Once a client chunk holding `marker` has gone to Redis, every reply on
   * its connection is dropped (the command ran, its caller never hears):
   * resolves with the connection's sockets, for the test to cut.
   */
  swallowAfter(marker: string): Promise<{ client: net.Socket; upstream: net.Socket }> {
    return new Promise((resolve) => {
      this.armed = {
        marker,
        hit: (conn) => {
          conn.swallow = true;
          resolve(conn);
        },
      };
    });
  }

  /** The next client chunk holding `marker` goes to Redis at once; every reply on its connection is held `ms`. */
  stallAfter(marker: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.armed = {
        marker,
        hit: (conn) => {
          conn.holdUntil = performance.now() + ms;
          // The stall's length is the fault under test (a reply later than the caller's command timeout).
          setTimeout(() => {
            conn.holdUntil = 0;
            for (const b of conn.held.splice(0)) if (!conn.client.destroyed) conn.client.write(b);
          }, ms);
          resolve();
        },
      };
    });
  }

  /** Drop every pub/sub connection, and hold the connections made from now on (until `release`). */
  cutSubscribers(): number {
    this.holding = true;
    let cut = 0;
    for (const c of this.conns) {
      if (!c.subscriber) continue;
      cut++;
      c.client.destroy();
      c.upstream.destroy();
    }
    return cut;
  }

  /** Let the held connections (and new ones) through. */
  release(): void {
    this.holding = false;
    for (const client of this.held.splice(0)) if (!client.destroyed) this.forward(client);
  }

  /** Connections waiting to be let through. */
  get heldCount(): number {
    return this.held.length;
  }

  async close(): Promise<void> {
    for (const c of this.conns) {
      c.client.destroy();
      c.upstream.destroy();
    }
    for (const h of this.held.splice(0)) h.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
