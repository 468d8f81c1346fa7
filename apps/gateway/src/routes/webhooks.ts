import { Router } from 'express';
import { conflict, notFound } from '@infer/errors';
import type { WebhookDelivery, WebhookEvents, WebhookSecrets, WebhookSubject } from '@infer/webhooks';
import { tenantOf } from '../http/auth.js';

/**
 * Webhook routes, mounted on /v1 (so each needs an API key and sees only
 * its tenant's data; another tenant's id is a 404 like an unknown one).
 *
 * Route choices, after Svix's message / message-attempt model (a "delivery"
 * is one event, i.e. one message, with every attempt at sending it):
 * - `GET  /v1/webhooks/secret` → `{secret}`: the tenant's `whsec_` key,
 *   created on first use.
 * - `GET  /v1/jobs/{id}/webhook_deliveries` → `{object: "list", data:
 *   [WebhookDelivery]}`, oldest first; likewise
 *   `GET /v1/batches/{id}/webhook_deliveries`. 404 for an unknown job or
 *   batch; an empty list for one without a webhook. They expire with it,
 *   or later while retries are still scheduled (then listed from the log).
 * - `GET  /v1/webhook_deliveries/{event_id}` → WebhookDelivery. The event id
 *   is the `webhook-id` header a receiver got.
 * - `POST /v1/webhook_deliveries/{event_id}/resend` → 202 WebhookDelivery
 *   (state `pending`): one more attempt, now, same `webhook-id` and body,
 *   signed afresh; 409 while the delivery is still pending (retries are
 *   scheduled), 404 for an unknown or another tenant's event.
 *
 * WebhookDelivery: `{id, object: "webhook_delivery", event_type, url,
 * subject: {object, id}, created_at, state: pending|succeeded|failed,
 * attempt_count, next_attempt_at, attempts: [{attempt, timestamp,
 * status_code, error, duration_ms, state: succeeded|failed, trigger:
 * scheduled|manual}]}`.
 */
export interface WebhookRoutesDeps {
  secrets: WebhookSecrets;
  events: WebhookEvents;
  /** The tenant owning a job, or null when there is no such job. */
  jobTenant: (id: string) => Promise<string | null>;
  /** The tenant owning a batch, or null; without it the batch route is not mounted. */
  batchTenant?: (id: string) => Promise<string | null>;
}

const list = (data: WebhookDelivery[]) => ({ object: 'list' as const, data });

export function webhookRoutes(deps: WebhookRoutesDeps): Router {
  const router = Router();
  const { events } = deps;

  router.get('/webhooks/secret', async (req, res) => {
    res.set('Cache-Control', 'no-store');
    res.json({ secret: await deps.secrets.get(tenantOf(req)) });
  });

  const subjectRoute = (object: WebhookSubject['object'], owner: (id: string) => Promise<string | null>) =>
    router.get(`/${object === 'job' ? 'jobs' : 'batches'}/:id/webhook_deliveries`, async (req, res) => {
      const tenant = tenantOf(req);
      const id = req.params.id!;
      const missing = () => (object === 'job' ? notFound('job_not_found', `No job with id "${id}"`) : notFound('batch_not_found', `No batch with id "${id}"`));
      const ownedBy = await owner(id);
      if (ownedBy !== null && ownedBy !== tenant) throw missing();
      const deliveries = await events.log.list({ object, id }, tenant);
      // A record that has expired (RESULT_TTL_SECONDS) while its deliveries are still retried: the log
      // outlives it on purpose, and lists only this tenant's events. With none, the subject is unknown.
      if (ownedBy === null && deliveries.length === 0) throw missing();
      res.json(list(deliveries));
    });
  subjectRoute('job', deps.jobTenant);
  if (deps.batchTenant) subjectRoute('batch', deps.batchTenant);

  router.get('/webhook_deliveries/:event_id', async (req, res) => {
    const eventId = req.params.event_id!;
    const delivery = await events.log.delivery(eventId, tenantOf(req));
    if (!delivery) throw notFound('not_found', `No webhook delivery with id "${eventId}"`);
    res.json(delivery);
  });

  router.post('/webhook_deliveries/:event_id/resend', async (req, res) => {
    const eventId = req.params.event_id!;
    const outcome = await events.resend(tenantOf(req), eventId);
    if (outcome === 'missing') throw notFound('not_found', `No webhook delivery with id "${eventId}"`);
    if (outcome === 'pending') throw conflict('The delivery is still pending: its next attempt is already scheduled');
    res.status(202).json(outcome);
  });

  return router;
}
