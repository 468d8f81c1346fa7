import type { Redis } from 'ioredis';
import { keys } from '@infer/contract';
import { generateSecret } from './signing.js';

/**
 * Each tenant's webhook signing secret, in Redis under the deployment's
 * prefix, so every gateway and worker signs and serves the same one. It is
 * created on first use by whichever process asks first: SET NX makes exactly
 * one candidate win, and everyone then reads the winner.
 *
 * Redis is read on every use, not a copy kept: Redis may lose the key (a
 * restart without persistence, a failover to a replica that lagged), and a
 * process serving or signing with a copy would then disagree with those
 * that made a new one. A process that finds the key gone offers the secret it
 * last read (its receivers verify with it) as the candidate instead.
 */
export class WebhookSecrets {
  /** The secret each tenant had when this process last read it. */
  private readonly lastRead = new Map<string, string>();
  private readonly k: ReturnType<typeof keys>;

  constructor(
    private readonly redis: Redis,
    prefix: string,
  ) {
    this.k = keys(prefix);
  }

  async get(tenant: string): Promise<string> {
    const key = this.k.webhookSecret(tenant);
    let secret = await this.redis.get(key);
    if (!secret) {
      const candidate = this.lastRead.get(tenant) ?? generateSecret();
      const won = await this.redis.set(key, candidate, 'NX');
      secret = won === 'OK' ? candidate : await this.redis.get(key);
      if (!secret) throw new Error('the webhook secret vanished right after it was created');
    }
    this.lastRead.set(tenant, secret);
    return secret;
  }
}
