/**
 * The webhook delivery log as the API shows it (docs/api.md, "The
 * WebhookDelivery object"): one event and every attempt at sending it. The
 * server's log (@infer/webhooks) writes these, the SDK reads them.
 */

export const WEBHOOK_EVENT_TYPES = ['job.started', 'job.completed', 'batch.completed'] as const;
/** Which event: a job started, a job ended (succeeded, failed or canceled), a batch ended (completed or canceled). */
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** `pending` while an attempt is due, `succeeded` after a 2xx, `failed` once the retries are exhausted or stopped. */
export type WebhookDeliveryState = 'pending' | 'succeeded' | 'failed';

/** `scheduled`: the platform's own attempt or retry; `manual`: a resend. */
export type WebhookDeliveryTrigger = 'scheduled' | 'manual';

/** What an event is about: a job or a batch (`data.object`, `data.id` of its body). */
export interface WebhookSubject {
  object: 'job' | 'batch';
  id: string;
}

/** One attempt at sending an event. */
export interface WebhookAttempt {
  /** 1 for the event's first attempt, counting on across resends. */
  attempt: number;
  timestamp: string;
  /** The receiver's HTTP status; null when there was no answer (timeout, refused connection, a refused address). */
  status_code: number | null;
  /** Why the attempt failed; null when it succeeded. */
  error: string | null;
  duration_ms: number;
  state: 'succeeded' | 'failed';
  trigger: WebhookDeliveryTrigger;
}

/**
 * One event and every attempt at sending it. `id` is the `webhook-id`
 * header the receiver got: the same on every attempt and resend, so a
 * receiver deduplicates on it.
 */
export interface WebhookDelivery {
  id: string;
  object: 'webhook_delivery';
  event_type: WebhookEventType;
  /** Where it is sent. */
  url: string;
  subject: WebhookSubject;
  created_at: string;
  state: WebhookDeliveryState;
  attempt_count: number;
  /** When the next attempt is due; null unless `pending`. */
  next_attempt_at: string | null;
  /** Oldest first. */
  attempts: WebhookAttempt[];
}
