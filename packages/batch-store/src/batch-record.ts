import type { Batch, BatchRequestCounts, BatchStatus, WebhookEventFilter } from '@infer/contract';

/** A batch as stored in its Redis hash: times in epoch ms, counts as integers. */
export interface BatchRecord {
  id: string;
  tenant: string;
  model: string;
  version: string;
  status: BatchStatus;
  createdAt: number;
  startedAt: number | null;
  completedAt: number | null;
  metadata: Record<string, unknown> | null;
  webhook: string | null;
  webhookEventsFilter: WebhookEventFilter[];
  counts: BatchRequestCounts;
  /** Chunks enqueued so far (all of them once `sealed`). */
  chunks: number;
  /** Chunks whose results are written. */
  chunksDone: number;
  /** The upload has ended: no more chunks will be added. */
  sealed: boolean;
}

export type NewBatchRecord = Pick<
  BatchRecord,
  'id' | 'tenant' | 'model' | 'version' | 'createdAt' | 'metadata' | 'webhook' | 'webhookEventsFilter'
>;

export function newBatchHash(r: NewBatchRecord): Record<string, string> {
  return {
    id: r.id,
    tenant: r.tenant,
    model: r.model,
    version: r.version,
    status: 'queued',
    created_at: String(r.createdAt),
    metadata: r.metadata ? JSON.stringify(r.metadata) : '',
    webhook: r.webhook ?? '',
    webhook_events_filter: r.webhookEventsFilter.join(','),
    total: '0',
    succeeded: '0',
    failed: '0',
    canceled: '0',
    chunks: '0',
    chunks_done: '0',
    sealed: '0',
  };
}

const num = (s: string | undefined): number | null => (s ? Number(s) : null);
const int = (s: string | undefined): number => (s ? Number(s) : 0);

export function hashToBatchRecord(h: Record<string, string>): BatchRecord | null {
  if (!h.id || !h.status) return null;
  return {
    id: h.id,
    tenant: h.tenant ?? '',
    model: h.model ?? '',
    version: h.version ?? '',
    status: h.status as BatchStatus,
    createdAt: Number(h.created_at),
    startedAt: num(h.started_at),
    completedAt: num(h.completed_at),
    metadata: h.metadata ? (JSON.parse(h.metadata) as Record<string, unknown>) : null,
    webhook: h.webhook || null,
    webhookEventsFilter: h.webhook_events_filter ? (h.webhook_events_filter.split(',') as WebhookEventFilter[]) : [],
    counts: { total: int(h.total), succeeded: int(h.succeeded), failed: int(h.failed), canceled: int(h.canceled) },
    chunks: int(h.chunks),
    chunksDone: int(h.chunks_done),
    sealed: h.sealed === '1',
  };
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** The public Batch of docs/api.md. */
export function toBatch(r: BatchRecord): Batch {
  return {
    id: r.id,
    object: 'batch',
    model: r.model,
    version: r.version,
    status: r.status,
    created_at: new Date(r.createdAt).toISOString(),
    started_at: iso(r.startedAt),
    completed_at: iso(r.completedAt),
    request_counts: { ...r.counts },
    metadata: r.metadata,
    urls: { get: `/v1/batches/${r.id}`, results: `/v1/batches/${r.id}/results`, cancel: `/v1/batches/${r.id}/cancel` },
  };
}

/**
 * The `batch.completed` webhook an ended batch sends (canceled ones too, as
 * `job.completed` covers every ended status), or null when it has no webhook
 * or its filter leaves the event out. For the `onEnded` hook of BatchStore.
 */
export function batchCompletedWebhook(r: BatchRecord): { tenant: string; url: string; type: 'batch.completed'; data: Batch } | null {
  if (!r.webhook || !r.webhookEventsFilter.includes('completed')) return null;
  return { tenant: r.tenant, url: r.webhook, type: 'batch.completed', data: toBatch(r) };
}
