import type { Redis } from 'ioredis';
import { jobKeys } from '@infer/contract';
import type { Logger } from '@infer/logger';
import { eventIdFor, type WebhookEvents } from '@infer/webhooks';
import { decodeRecord, renderEndedJob, renderStartedJob } from './job-record.js';

/**
 * Exactly one `job.completed` per job, crashes included; and the
 * `job.started` of a job that ended before its worker had made it.
 *
 * The script that ends a job (FINISH, CANCEL_COMMIT) puts the job's id on
 * its queue's outbox in the same atomic step, when the job has a webhook
 * that wants the event. Draining the outbox creates the event with an id
 * derived from the job (WebhookEvents.ensure: created unless it exists,
 * its delivery queued while pending), and only then takes the id off. A
 * process that dies anywhere in between leaves the id on the outbox; the
 * next drain (any worker of the queue, at once after its own ends, and
 * every second) does the same again and finds the event already there.
 *
 * A job's `job.started` is made beside its run, when its envelope is taken.
 * When its job ends before that is known to be done, FINISH puts
 * `s:<job id>` on the outbox too, and the drain makes the event (running, as
 * it started) unless it exists: a worker that dies then does not lose it.
 */
export class CompletedEventsOutbox {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly events: Pick<WebhookEvents, 'ensure'>,
    private readonly logger: Logger,
  ) {}

  /** Drain one queue's outbox (its key from `interactiveKeys().outbox`), oldest first; resolves with the events ensured. */
  async drain(outbox: string, most = 100): Promise<number> {
    const ids = (await this.redis.lrange(outbox, -most, -1)).reverse();
    // All at once: their Redis calls share round trips (auto-pipelining), instead of four round trips a job in turn.
    const sent = await Promise.all(ids.map((id) => this.send(outbox, id)));
    return sent.filter(Boolean).length;
  }

  /** Ensure one ended job's event (job.completed, or job.started for `s:<id>`), then take it off the outbox; false when it had none (or failed: left for the next drain). */
  private async send(outbox: string, entry: string): Promise<boolean> {
    const started = entry.startsWith('s:');
    const id = started ? entry.slice(2) : entry;
    const type = started ? 'job.started' : 'job.completed';
    try {
      let sent = false;
      const record = await this.redis.getBuffer(jobKeys(this.prefix, id).record);
      // Expired (RESULT_TTL passed before any drain): nothing left to tell.
      if (record) {
        const { header } = decodeRecord(record);
        if (header.w && (header.wf ?? 'completed').split(',').includes(started ? 'start' : 'completed')) {
          // The Job as the API prints it, straight into the body (a large output is not parsed and printed again).
          const data = { object: 'job' as const, id, json: started ? renderStartedJob(id, record) : renderEndedJob(id, record) };
          await this.events.ensure(eventIdFor(type, id), { tenant: header.t, url: header.w, type, data, ...(header.tp ? { traceparent: header.tp } : {}) });
          sent = true;
        }
      }
      await this.redis.lrem(outbox, 1, entry);
      return sent;
    } catch (err) {
      // Left on the outbox: the next drain tries again.
      this.logger.warn({ jobId: id, err: (err as Error).message }, `could not queue a ${type} event yet`);
      return false;
    }
  }
}
