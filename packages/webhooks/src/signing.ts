import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Webhook } from 'standardwebhooks';

/**
 * Standard Webhooks signing (https://www.standardwebhooks.com), done by the
 * official `standardwebhooks` package rather than by hand: the receiver
 * verifies with the same library, so the two can never disagree on the
 * scheme.
 */

export const SECRET_PREFIX = 'whsec_';

/** A new signing secret: `whsec_` + base64 of 32 random bytes (the spec asks for 24 to 64). */
export function generateSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString('base64');
}

/** A new event id: the `webhook-id` header, the same on every attempt of one event. */
export function newEventId(): string {
  return `msg_${randomUUID().replaceAll('-', '')}`;
}

/**
 * The id of an event there is exactly one of (a job's `job.completed`):
 * derived from what it is about, so whoever creates it, however often,
 * creates the same one. Shaped as `newEventId`'s.
 */
export function eventIdFor(type: string, subjectId: string): string {
  return `msg_${createHash('sha256').update(`${type}\0${subjectId}`).digest('hex').slice(0, 32)}`;
}

export interface SignedHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

/**
 * The three Standard Webhooks headers for one attempt. The timestamp is the
 * attempt's own (receivers reject stale timestamps, so a retry hours later is
 * signed afresh); the id stays the event's, so receivers can deduplicate.
 */
export function signWebhook(secret: string, eventId: string, at: Date, body: string): SignedHeaders {
  return {
    'webhook-id': eventId,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': new Webhook(secret).sign(eventId, at, body),
  };
}
