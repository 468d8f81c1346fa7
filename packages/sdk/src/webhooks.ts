import type { Transport } from './http.js';
import type { CallOptions } from './models.js';
import type { WebhookDelivery } from './types.js';

const deliveryPath = (eventId: string, rest = '') => `/v1/webhook_deliveries/${encodeURIComponent(eventId)}${rest}`;

/**
 * Webhooks: the secret to verify deliveries with, and the delivery log, to
 * see what the platform sent to a receiver, what it answered, and to send
 * an ended event once more. A delivery is one event (its `id` is the
 * `webhook-id` header) with every attempt at sending it. Everything here is
 * the tenant's own: another tenant's job, batch or event is a 404, as an
 * unknown one is.
 */
export class Webhooks {
  readonly #http: Transport;

  constructor(http: Transport) {
    this.#http = http;
  }

  /** The tenant's `whsec_…` signing secret, to verify deliveries with (Standard Webhooks). */
  async secret(options: CallOptions = {}): Promise<string> {
    const body = await this.#http.json<{ secret: string }>('/v1/webhooks/secret', { signal: options.signal });
    return body.secret;
  }

  /**
   * Every event of the job, oldest first, with its attempts: empty for a job
   * without a webhook. 404 `job_not_found` as for `jobs.get`.
   */
  async jobDeliveries(jobId: string, options: CallOptions = {}): Promise<WebhookDelivery[]> {
    const page = await this.#http.json<{ data: WebhookDelivery[] }>(`/v1/jobs/${encodeURIComponent(jobId)}/webhook_deliveries`, {
      signal: options.signal,
    });
    return page.data;
  }

  /** The same for a batch (its `batch.completed`); 404 `batch_not_found`. */
  async batchDeliveries(batchId: string, options: CallOptions = {}): Promise<WebhookDelivery[]> {
    const page = await this.#http.json<{ data: WebhookDelivery[] }>(`/v1/batches/${encodeURIComponent(batchId)}/webhook_deliveries`, {
      signal: options.signal,
    });
    return page.data;
  }

  /**
   * One event by its id, the `webhook-id` a receiver got: what a receiver's
   * operator looks up. 404 `not_found` for an unknown or expired one (a log
   * lives as long as its job or batch).
   */
  delivery(eventId: string, options: CallOptions = {}): Promise<WebhookDelivery> {
    return this.#http.json<WebhookDelivery>(deliveryPath(eventId), { signal: options.signal });
  }

  /**
   * Send an ended event (`succeeded` or `failed`) once more, now: the same
   * `webhook-id` and body, signed afresh. A single attempt (`trigger:
   * 'manual'`), not a new retry schedule. Answers the delivery, `pending`
   * again; poll `delivery()` for the outcome. 409 `conflict` while it is
   * still pending. Never retried on 429 or 503, as a POST with an effect: a
   * retry of a resend that did take effect would be a 409, or a second
   * attempt at the receiver.
   */
  resend(eventId: string, options: CallOptions = {}): Promise<WebhookDelivery> {
    return this.#http.json<WebhookDelivery>(deliveryPath(eventId, '/resend'), { method: 'POST', signal: options.signal });
  }
}
