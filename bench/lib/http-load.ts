/**
 * A closed-loop HTTP load generator: `clients` concurrent clients, each
 * sending its next request as soon as the previous one is answered, until a
 * time or request budget runs out. node:http with a keep-alive Agent (one
 * socket per client), not fetch/undici, whose per-request overhead would be
 * charged to the server on a machine with few cores. Bodies are prepared
 * before the clock starts and responses are parsed after it stops, so the
 * generator itself does as little as it can while measuring.
 */
import http from 'node:http';

export interface LoadOptions {
  url: string;
  clients: number;
  seconds: number;
  /** Stop after this many requests even if time is left. */
  maxRequests: number;
  headers: http.OutgoingHttpHeaders;
  /** Request bodies, sent round-robin. */
  bodies: readonly string[];
}

export interface Answer {
  status: number;
  /** From the request's first byte to the response's last one. */
  ms: number;
  /** When the request was sent, in epoch ms (fractional): to line answers up with the timestamps a server put in them. */
  sentAt: number;
  text: string;
}

export interface LoadResult {
  answers: Answer[];
  seconds: number;
  /** Requests that failed below HTTP (reset, refused). */
  socketErrors: number;
}

export async function closedLoop(options: LoadOptions): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(64, options.clients) });
  const url = new URL(options.url);
  const bodies = options.bodies.map((b) => Buffer.from(b));
  const answers: Answer[] = [];
  let socketErrors = 0;
  const post = (body: Buffer) =>
    new Promise<Answer>((resolve, reject) => {
      const t = performance.now();
      const req = http.request(
        url,
        { method: 'POST', agent, headers: { ...options.headers, 'content-type': 'application/json', 'content-length': body.length } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t, sentAt: performance.timeOrigin + t, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  let sent = 0;
  const t0 = performance.now();
  const deadline = t0 + options.seconds * 1000;
  const client = async () => {
    while (performance.now() < deadline && sent < options.maxRequests) {
      const body = bodies[sent++ % bodies.length]!;
      try {
        answers.push(await post(body));
      } catch {
        socketErrors++;
      }
    }
  };
  await Promise.all(Array.from({ length: options.clients }, client));
  const seconds = (performance.now() - t0) / 1000;
  agent.destroy();
  return { answers, seconds, socketErrors };
}
