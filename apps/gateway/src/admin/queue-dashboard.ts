import { Queue } from 'bullmq';
import type { RequestHandler, Router } from 'express';
import type { Redis } from 'ioredis';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { bulkQueue, interactiveQueue, webhookQueue, type QueueRef } from '@infer/contract';

export interface QueueDashboardOptions {
  /** A BullMQ connection (maxRetriesPerRequest: null): the gateway's, shared with its bulk and webhook producers. */
  connection: Redis;
  prefix: string;
  /**
   * The model versions whose queues to show now: the gateway's loaded ones,
   * and others whose queues still hold work (a version removed from the
   * repository before this gateway started, say); each has an interactive and
   * a bulk queue. Read on every dashboard request, so versions added or let
   * go while the gateway runs appear and go.
   */
  versions: () => Promise<ReadonlyArray<{ name: string; version: string }>>;
  /** Where it is mounted, for the page's links and its API calls. @default /admin/queues */
  basePath?: string;
}

/** Mount point of the dashboard; its page and its own API (`/admin/queues/api/…`) live below it. */
export const QUEUE_DASHBOARD_PATH = '/admin/queues';

/**
 * bull-board over every queue of the platform: per model version its
 * interactive queue (envelopes: each BullMQ job carries many jobs, listed in
 * its data's `jobs`) and its bulk queue (chunks of batches), and the webhook
 * delivery queue, each under its hash-tagged prefix.
 *
 * Read-only, every queue. The platform's invariants live outside BullMQ's
 * view of a job, so BullMQ's actions would break them:
 * - an envelope is written, taken and ended by the platform's own scripts,
 *   which keep the job index, the queued-instance counts (MAX_QUEUE_DEPTH,
 *   TENANT_MAX_QUEUED) and the outbox with it: "retry", "promote", "add" or
 *   "duplicate" would run jobs outside those books, "remove" or "clean"
 *   would leave index entries and counts behind (the sweep cleans the index,
 *   not the counts); a job is ended through the API (cancel), never here;
 * - a bulk chunk's inputs are deleted once its rows have ended (after its
 *   last attempt, retries_exhausted), so a retried chunk has nothing to run;
 *   removing a waiting one ends its rows `lost` through the sweep, which is
 *   what cancelling the batch does properly;
 * - a webhook delivery's state lives in its delivery log: a BullMQ retry of
 *   a failed run finds the event ended and sends nothing; the API's resend
 *   (POST …/webhook_deliveries/{event}/resend) is the way.
 * Pausing a queue is the one action the platform would honour (FETCH checks
 * BullMQ's paused flag), but bull-board's read-only mode has no exception
 * for it; a pause is `Queue.pause()` from a script, as docs/operations.md says.
 *
 * The model versions come from the gateway's live repository, with those
 * others in the registry of queues whose queues still hold work (one
 * SMEMBERS, and a look at each such other version's queues): on every
 * dashboard request the set is compared with the one shown and, when it
 * moved, bull-board's list is replaced: a version added while the gateway
 * runs gets its two queues, a removed one loses them once its queues are
 * drained and it is let go, and their Queue objects are closed. The rest
 * are kept, Queue objects and all.
 *
 * The BullMQ Queue objects and the board are built on the first request
 * (after the admin check): a gateway nobody opens the dashboard on holds none.
 */
export class QueueDashboard {
  private router: Router | undefined;
  private board: ReturnType<typeof createBullBoard> | undefined;
  /** The versions shown, as follow() keys them: compared on each request. */
  private shown = '';
  /** Looks at the versions begun, and the latest one whose answer was applied. */
  private looks = 0;
  private applied = 0;
  /** Queue objects and their adapters by queue name, kept while their version is shown. */
  private readonly adapters = new Map<string, { queue: Queue; adapter: BullMQAdapter }>();
  private readonly basePath: string;
  private closed = false;

  constructor(private readonly options: QueueDashboardOptions) {
    this.basePath = options.basePath ?? QUEUE_DASHBOARD_PATH;
  }

  /** The queues shown, in the order listed: interactive and bulk per model version, then webhooks. */
  refs(versions: ReadonlyArray<{ name: string; version: string }>): Array<{ ref: QueueRef; description: string }> {
    const { prefix } = this.options;
    const out: Array<{ ref: QueueRef; description: string }> = [];
    for (const m of versions) {
      out.push({
        ref: interactiveQueue(prefix, m.name, m.version),
        description: `${m.name} v${m.version}, interactive: each job here is an envelope, the jobs accepted together (data.jobs)`,
      });
      out.push({ ref: bulkQueue(prefix, m.name, m.version), description: `${m.name} v${m.version}, bulk: each job is a chunk of a batch's rows` });
    }
    out.push({ ref: webhookQueue(prefix), description: 'webhook deliveries: each job is one event\'s delivery run' });
    return out;
  }

  /** The Express handler to mount at `basePath`, behind requireAdminKey. */
  readonly handler: RequestHandler = (req, res, next) => {
    const router = (this.router ??= this.build());
    // Redis unreachable: the page still answers, with the queues last shown.
    void this.follow()
      .catch(() => undefined)
      .then(() => router(req, res, next));
  };

  private build(): Router {
    const serverAdapter = new ExpressAdapter();
    serverAdapter.setBasePath(this.basePath);
    // Built with the webhook queue alone (read-only, so bull-board takes the whole board as read-only); follow() adds the versions'.
    this.board = createBullBoard({ queues: this.adaptersOf(this.refs([])), serverAdapter, options: { uiConfig: { boardTitle: 'infer queues' } } });
    return serverAdapter.getRouter() as Router;
  }

  /** Show the queues of the versions known now, when they differ from those shown. */
  private async follow(): Promise<void> {
    const asked = ++this.looks;
    const versions = await this.options.versions();
    // Two requests' looks may finish out of order: an older one's answer is not shown over a newer one's.
    if (asked < this.applied) return;
    this.applied = asked;
    const key = versions.map((v) => `${v.name}\0${v.version}`).join('\n');
    if (key === this.shown || this.closed) return;
    this.shown = key;
    const refs = this.refs(versions);
    const wanted = new Set(refs.map((r) => r.ref.name));
    for (const [name, { queue }] of this.adapters) {
      if (wanted.has(name)) continue;
      this.adapters.delete(name);
      void queue.close().catch(() => undefined);
    }
    // Emptied, then set in order: bull-board lists queues in the order they were added.
    this.board!.replaceQueues([]);
    this.board!.setQueues(this.adaptersOf(refs));
  }

  /** The adapters of `refs`, reusing those already made. Every one read-only: see above. */
  private adaptersOf(refs: ReadonlyArray<{ ref: QueueRef; description: string }>): BullMQAdapter[] {
    return refs.map(({ ref, description }) => {
      let entry = this.adapters.get(ref.name);
      if (!entry) {
        const queue = new Queue(ref.name, { connection: this.options.connection, prefix: ref.prefix });
        entry = { queue, adapter: new BullMQAdapter(queue, { readOnlyMode: true, allowRetries: false, description, prefix: '' }) };
        this.adapters.set(ref.name, entry);
      }
      return entry.adapter;
    });
  }

  /** Close the Queue objects (the connection is the gateway's). Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const queues = [...this.adapters.values()].map((e) => e.queue);
    this.adapters.clear();
    await Promise.allSettled(queues.map((q) => q.close()));
  }
}
