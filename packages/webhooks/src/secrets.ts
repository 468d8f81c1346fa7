import type { Redis } from 'ioredis';
import { keys } from '@infer/contract';
import { generateSecret } from './signing.js';

/**
 * Each tenant's webhook signing secret, in Redis under the deployment's
 * prefix, so every gateway and worker signs and serves the same one. It is
 * created on first use by whichever process asks first: SET NX makes exactly
 * one candidate win, and everyone then reads the winner. Secrets never
 * change once made, so each process caches what it has read.
 */
export class WebhookSecrets {
  private readonly cache = new Map<string, string>();
  private readonly k: ReturnType<typeof keys>;

  constructor(
    private readonly redis: Redis,
    prefix: string,
  ) {
    this.k = keys(prefix);
  }

  async get(tenant: string): Promise<string> {
    const cached = this.cache.get(tenant);
    if (cached) return cached;
    const key = this.k.webhookSecret(tenant);
    let secret = await this.redis.get(key);
    if (!secret) {
      const candidate = generateSecret();
      const won = await this.redis.set(key, candidate, 'NX');
      secret = won === 'OK' ? candidate : await this.redis.get(key);
      if (!secret) throw new Error('the webhook secret vanished right after it was created');
    }
    this.cache.set(tenant, secret);
    return secret;
  }
}
