import type { EnvelopeJob } from '@infer/contract';
import { hasStartedHook, renderPendingJob } from '@infer/job-store';
import type { Logger } from '@infer/logger';
import { eventIdFor, type NewWebhookEvent, type WebhookEvents } from '@infer/webhooks';

/** A job of a taken envelope, as the webhooks need it. */
export interface WebhookJob {
  model: string;
  version: string;
  job: EnvelopeJob;
}

/**
 * Turns the starts a worker sees into `job.started` webhook events, off the
 * inference path and in bulk. Everything an event needs is in the envelope
 * (the webhook URL and filter travel with each job), so nothing is read
 * back from Redis; jobs without a webhook cost nothing. (`job.completed`
 * goes through the queue's outbox: CompletedEventsOutbox.)
 *
 * Failures are logged, never thrown: a webhook problem must not fail or
 * retry an inference that succeeded.
 */
export class JobWebhookEmitter {
  constructor(
    private readonly events: WebhookEvents,
    private readonly logger: Logger,
  ) {}

  /**
   * `job.started` for the jobs that asked for it, on a take of their
   * envelope until one has made them (the envelope is then marked: see
   * EnvelopeQueue.markStartedSent): each job's event has one id
   * (eventIdFor), so a take after a stall sends the events the worker that
   * died had not, and none twice. True when there were events and they are
   * made and queued. Never rejects.
   */
  async started(jobs: readonly WebhookJob[], startedAt: number): Promise<boolean> {
    const wanted = jobs.filter((j) => hasStartedHook(j.job));
    if (wanted.length === 0) return false;
    try {
      // Rendering can throw on a corrupt envelope: inside the try too.
      const events = wanted.map(({ model, version, job }) => ({
        id: eventIdFor('job.started', job.id),
        event: {
          tenant: job.tenant,
          url: job.webhook!,
          type: 'job.started',
          data: { object: 'job', id: job.id, json: renderPendingJob(job.id, model, version, job, startedAt) },
          ...(job.traceparent ? { traceparent: job.traceparent } : {}),
        } satisfies NewWebhookEvent,
      }));
      await this.events.ensureManyOrFail(events);
      return true;
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'could not queue job.started webhook events; those created are marked failed (resendable)');
      return false;
    }
  }
}
