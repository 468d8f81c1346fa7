import { InferPayload, type WebhookEventFilter } from '@infer/contract';
import { toJob, type JobEnding, type JobRecord, type JobStore, type StartOutcome } from '@infer/job-store';
import type { Logger } from '@infer/logger';
import type { NewWebhookEvent, WebhookEvents } from '@infer/webhooks';

const WebhookEventsField = InferPayload.shape.webhook_events;

/** The `webhook_events` a queue payload carries: present only for jobs with a webhook. */
export function webhookEventsOf(data: unknown): WebhookEventFilter[] | undefined {
  if (typeof data !== 'object' || data === null || !('webhook_events' in data)) return undefined;
  const parsed = WebhookEventsField.safeParse(data.webhook_events);
  return parsed.success ? parsed.data : undefined;
}

/** The webhook side of one inference batch, begun at its start. */
export interface BatchWebhooks {
  /** After `store.end`: `job.completed` for the jobs this batch ended (`ended[i]`). Never rejects. */
  completed(endings: readonly JobEnding[], ended: readonly boolean[]): Promise<void>;
}

/**
 * Turns job state changes seen by a ModelWorker into webhook events, off
 * the inference path and in bulk:
 *
 * - `started()` is called right after `store.start` and not awaited. For
 *   the batch's jobs whose payload says they have a webhook (and only
 *   those: jobs without one cost nothing), it reads their records in one
 *   pipeline while the model runs and enqueues `job.started` for those that
 *   were queued and asked for `start`.
 * - `completed()` renders each ended job from that record plus its ending
 *   (exactly what END_JOB wrote, so no second read) and enqueues every
 *   `job.completed` of the batch in one bulk add, after the batch's
 *   `job.started` events, so a receiver sees them in order.
 *
 * Failures are logged, never thrown: a webhook problem must not fail or
 * retry an inference that succeeded.
 */
export class JobWebhookEmitter {
  constructor(
    private readonly events: WebhookEvents,
    private readonly store: JobStore,
    private readonly logger: Logger,
  ) {}

  started(jobs: readonly { id: string; data: unknown }[], before: readonly StartOutcome[]): BatchWebhooks | undefined {
    const wanted: { id: string; wasQueued: boolean }[] = [];
    jobs.forEach((job, i) => {
      const b = before[i];
      if ((b === 'queued' || b === 'running') && webhookEventsOf(job.data)) wanted.push({ id: job.id, wasQueued: b === 'queued' });
    });
    if (wanted.length === 0) return undefined;

    const records = this.store.getMany(wanted.map((w) => w.id)).then(
      (list) => {
        const byId = new Map<string, JobRecord>();
        list.forEach((r) => r?.webhook && byId.set(r.id, r));
        return byId;
      },
      (err: unknown) => {
        this.logger.error({ err: (err as Error).message, jobs: wanted.length }, 'could not read jobs for their webhooks; their events are lost');
        return new Map<string, JobRecord>();
      },
    );
    const startedSent = records.then((byId) =>
      this.send(() => {
        const events: NewWebhookEvent[] = [];
        for (const w of wanted) {
          const r = byId.get(w.id);
          if (r?.webhook && w.wasQueued && r.webhookEventsFilter.includes('start')) {
            events.push({ tenant: r.tenant, url: r.webhook, type: 'job.started', data: toJob(r) });
          }
        }
        return events;
      }),
    );

    return {
      completed: async (endings, ended) => {
        const byId = await records;
        await startedSent;
        await this.send(() => {
          const events: NewWebhookEvent[] = [];
          endings.forEach((e, i) => {
            const r = byId.get(e.id);
            if (!ended[i] || !r?.webhook || !r.webhookEventsFilter.includes('completed')) return;
            const endedRecord: JobRecord = {
              ...r,
              status: e.status,
              completedAt: e.completedAt,
              output: e.output ?? null,
              error: e.error ?? null,
              metrics: e.metrics ?? null,
            };
            events.push({ tenant: r.tenant, url: r.webhook, type: 'job.completed', data: toJob(endedRecord) });
          });
          return events;
        });
      },
    };
  }

  /** `job.completed` for one job ended off the batch path (a bad payload, a lost worker). Never rejects. */
  async completedOne(id: string, data: unknown): Promise<void> {
    if (!webhookEventsOf(data)) return;
    try {
      const r = await this.store.get(id);
      const url = r?.webhook;
      if (r && url && r.webhookEventsFilter.includes('completed')) {
        await this.send(() => [{ tenant: r.tenant, url, type: 'job.completed', data: toJob(r) }]);
      }
    } catch (err) {
      this.logger.error({ err: (err as Error).message, jobId: id }, 'could not read a job for its webhook; its event is lost');
    }
  }

  /** Build (rendering can throw on a corrupt record) and enqueue events; logs, never rejects. */
  private async send(build: () => NewWebhookEvent[]): Promise<void> {
    try {
      const events = build();
      if (events.length) await this.events.enqueue(events);
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'could not enqueue webhook events; they are lost');
    }
  }
}
