import type { Transport } from './http.js';
import type { CallOptions } from './models.js';

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
}
