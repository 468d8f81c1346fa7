import type { Job, JobError, JobMetrics, JobStatus, NestedArray, WebhookEventFilter } from '@infer/contract';

/** A job as stored in its Redis hash: times in epoch ms, output kept as a JSON string. */
export interface JobRecord {
  id: string;
  tenant: string;
  model: string;
  version: string;
  status: JobStatus;
  createdAt: number;
  startedAt: number | null;
  completedAt: number | null;
  /** JSON of `Record<string, NestedArray>`, rendered once by the worker. */
  output: string | null;
  error: JobError | null;
  metadata: Record<string, unknown> | null;
  metrics: JobMetrics | null;
  webhook: string | null;
  webhookEventsFilter: WebhookEventFilter[];
}

export type NewJobRecord = Omit<JobRecord, 'status' | 'startedAt' | 'completedAt' | 'output' | 'error' | 'metrics'>;

export function recordToHash(r: NewJobRecord): Record<string, string> {
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
  };
}

const num = (s: string | undefined): number | null => (s ? Number(s) : null);
const json = <T>(s: string | undefined): T | null => (s ? (JSON.parse(s) as T) : null);

export function hashToRecord(h: Record<string, string>): JobRecord | null {
  if (!h.id || !h.status) return null;
  return {
    id: h.id,
    tenant: h.tenant ?? '',
    model: h.model ?? '',
    version: h.version ?? '',
    status: h.status as JobStatus,
    createdAt: Number(h.created_at),
    startedAt: num(h.started_at),
    completedAt: num(h.completed_at),
    output: h.output || null,
    error: json<JobError>(h.error),
    metadata: json<Record<string, unknown>>(h.metadata),
    metrics: json<JobMetrics>(h.metrics),
    webhook: h.webhook || null,
    webhookEventsFilter: h.webhook_events_filter ? (h.webhook_events_filter.split(',') as WebhookEventFilter[]) : [],
  };
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** The public Job of API.md. */
export function toJob(r: JobRecord): Job {
  return {
    id: r.id,
    object: 'job',
    model: r.model,
    version: r.version,
    status: r.status,
    created_at: new Date(r.createdAt).toISOString(),
    started_at: iso(r.startedAt),
    completed_at: iso(r.completedAt),
    output: r.output ? (JSON.parse(r.output) as Record<string, NestedArray>) : null,
    error: r.error,
    metadata: r.metadata,
    metrics: r.metrics,
    webhook: r.webhook,
    webhook_events_filter: r.webhookEventsFilter,
    urls: { get: `/v1/jobs/${r.id}`, cancel: `/v1/jobs/${r.id}/cancel` },
  };
}

/** The full record of a job just created, before any worker touched it. */
export function queuedRecord(r: NewJobRecord): JobRecord {
  return { ...r, status: 'queued', startedAt: null, completedAt: null, output: null, error: null, metrics: null };
}
