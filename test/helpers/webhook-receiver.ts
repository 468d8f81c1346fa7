import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One delivery as it came: the event it carried (its JSON body) and the request's headers. */
export interface Delivery<E> {
  event: E;
  headers: IncomingHttpHeaders;
}

export interface WebhookReceiver<E = unknown> {
  /** Where to point a job's `webhook`. */
  readonly url: string;
  /** Every delivery so far, in the order they came. */
  readonly deliveries: readonly Delivery<E>[];
  close(): Promise<void>;
}

/**
 * A webhook endpoint on a free local port (jobs need WEBHOOK_ALLOW_PRIVATE
 * to send to it): keeps every delivery and answers it 204, or what `answer`
 * says for the n-th (from 1): a status, or 'hang' (no answer until the
 * receiver closes). `E` is what the test expects the bodies to be; nothing
 * checks them.
 */
export async function startWebhookReceiver<E = unknown>(answer: (n: number) => number | 'hang' = () => 204): Promise<WebhookReceiver<E>> {
  const deliveries: Delivery<E>[] = [];
  const server = createServer((req, res) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      deliveries.push({ event: JSON.parse(text) as E, headers: req.headers });
      const status = answer(deliveries.length);
      if (status !== 'hang') res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    deliveries,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** One request as a raw receiver got it: the body as sent (what a signature covers), its headers, and its response. */
export interface RawRequest {
  body: string;
  headers: Record<string, string>;
  /** Still open when the receiver's answer was 'hang': a test answers it when it chooses. */
  res: ServerResponse;
}

export interface RawReceiver {
  readonly url: string;
  /** Every request so far, in the order they came. */
  readonly got: RawRequest[];
  close(): Promise<void>;
}

/**
 * A webhook endpoint keeping each request's raw body and headers, for tests
 * that verify signatures or compare bodies byte for byte; answers 204, or
 * what `answer` says for the n-th request (from 1): a status, or 'hang'.
 */
export async function startRawReceiver(answer: (n: number) => number | 'hang' = () => 204): Promise<RawReceiver> {
  const got: RawRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
      got.push({ body: Buffer.concat(chunks).toString('utf8'), headers, res });
      const status = answer(got.length);
      if (status !== 'hang') res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    got,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
