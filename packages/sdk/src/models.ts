import type { ModelInfo } from '@infer/contract';
import type { Transport } from './http.js';

export interface CallOptions {
  signal?: AbortSignal;
}

export class Models {
  readonly #http: Transport;

  constructor(http: Transport) {
    this.#http = http;
  }

  /** Every model the platform serves. */
  async list(options: CallOptions = {}): Promise<ModelInfo[]> {
    const page = await this.#http.json<{ data: ModelInfo[] }>('/v1/models', { signal: options.signal });
    return page.data;
  }

  /** One model; 404 `model_not_found` if there is none by that name. */
  get(name: string, options: CallOptions = {}): Promise<ModelInfo> {
    return this.#http.json<ModelInfo>(`/v1/models/${encodeURIComponent(name)}`, { signal: options.signal });
  }
}
