import { createServer, type IncomingHttpHeaders } from 'node:http';
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
