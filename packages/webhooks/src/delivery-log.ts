import { randomUUID } from 'node:crypto';
import type { ChainableCommander, Redis } from 'ioredis';
import { keys, type WebhookAttempt, type WebhookDelivery, type WebhookDeliveryState, type WebhookDeliveryTrigger, type WebhookEventType, type WebhookSubject } from '@infer/contract';

/**
 * The delivery log, after Svix's message / message-attempt model: an event
 * (message) is what was sent, to which URL, and where it stands; each
 * attempt at sending it is a row of its own. Clients read both through
 * `GET /v1/jobs/{id}/webhook_deliveries` and
 * `GET /v1/webhook_deliveries/{event_id}`.
 *
 * Redis layout, all under the deployment's prefix (see `keys()`):
 * - `webhook:event:{<id>}`: hash with the event and its state;
 * - `webhook:event:{<id>}:attempts`: list of JSON attempts, oldest first;
 * - `webhook:deliveries:<job|batch>:<id>`: list of the subject's event ids.
 * Every write sets all three to expire `ttlMs` later (the caller passes
 * RESULT_TTL, or longer while retries are still scheduled), so a job's
 * deliveries live as long as the job itself. An event and its attempts
 * share a hash tag (the event id), so an attempt is one MULTI on one Redis
 * Cluster slot; the subject's list, in another slot, is refreshed beside it.
 */

// The log's API shapes are the contract's: the SDK reads what this writes.
export { WEBHOOK_EVENT_TYPES, type WebhookAttempt, type WebhookDelivery, type WebhookEventType, type WebhookSubject } from '@infer/contract';
export type DeliveryState = WebhookDeliveryState;
export type DeliveryTrigger = WebhookDeliveryTrigger;

/** An event as stored, with the body that is signed and sent on every attempt. */
export interface StoredEvent {
  id: string;
  tenant: string;
  type: WebhookEventType;
  url: string;
  subject: WebhookSubject;
  body: string;
  createdAt: number;
  state: DeliveryState;
  attemptCount: number;
  nextAttemptAt: number | null;
  /** The last resend accepted (MARK_RESEND), or null: none ever was. */
  resendToken: string | null;
}

/**
 * Whether a pending event is a run's (h: HMGET state, attempt_count,
 * resend_token): a scheduled run has attempted it, or a resend marked it.
 * Its run delivers it; nothing else queues or ends it.
 */
const OWNED_BY_A_RUN = `
local function ownedByARun(h) return (tonumber(h[2]) or 0) > 0 or h[3] ~= false end
`;

/**
 * KEYS[1] event. ARGV ttl_ms, unless_owned ('1' or '0'). A `pending` event
 * becomes `failed` (its delivery run was lost): {1, its subject's object and
 * id}, whose delivery list the caller keeps as long (another slot); else {0}.
 * With unless_owned, a pending event that a run owns (one that has attempted
 * it, or a resend's: CREATE_IF_ABSENT's 'retrying') is left to that run.
 */
const FAIL_IF_PENDING = `${OWNED_BY_A_RUN}
local h = redis.call('HMGET', KEYS[1], 'state', 'attempt_count', 'resend_token', 'subject_object', 'subject_id')
if h[1] ~= 'pending' then return {0} end
if ARGV[2] == '1' and ownedByARun(h) then return {0} end
redis.call('HSET', KEYS[1], 'state', 'failed', 'next_attempt_at', '')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return {1, h[4], h[5]}
`;

/**
 * KEYS[1] event, KEYS[2] its attempts. ARGV tenant, now, token (the
 * resend's own), ttl_ms. Returns
 * 'missing', 'other' (another tenant's), 'pending' (already due), or the
 * state it had ('succeeded' or 'failed') when it is now pending again.
 * The same resend run again (ioredis sends a command again after a
 * reconnect when its reply was lost: Redis may have run it) answers as the
 * first run did, from the token and the state it kept, instead of
 * 'pending', which would leave the event pending with nothing queued.
 * A marked event (and its attempts) lives at least ttl_ms more, so one
 * resent near the end of its life is still there when its run comes.
 */
const MARK_RESEND = `
local h = redis.call('HMGET', KEYS[1], 'tenant', 'state', 'resend_token', 'resend_was')
if not h[1] then return 'missing' end
if h[1] ~= ARGV[1] then return 'other' end
if h[2] == 'pending' then
  if h[3] == ARGV[3] and h[4] then return h[4] end
  return 'pending'
end
redis.call('HSET', KEYS[1], 'state', 'pending', 'next_attempt_at', ARGV[2], 'resend_token', ARGV[3], 'resend_was', h[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4], 'GT')
redis.call('PEXPIRE', KEYS[2], ARGV[4], 'GT')
return h[2]
`;

/**
 * KEYS[1] event. ARGV token (the resend's), state it had. Undoes that
 * resend's mark, if the event is still there and still marked by it: an
 * event that expired meanwhile is not written again (it would come back as
 * a partial hash that never expires).
 */
const UNMARK_RESEND = `
local h = redis.call('HMGET', KEYS[1], 'state', 'resend_token')
if h[1] ~= 'pending' or h[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'next_attempt_at', '')
return 1
`;

/**
 * KEYS[1] event, KEYS[2] its attempts. ARGV token (the record's own),
 * attempt JSON, state, attempt_count, next_attempt_at, ttl_ms. Appends the
 * attempt and moves the event on, once: the same record run again (a
 * command sent again after a lost reply) finds its token and does nothing,
 * so one attempt is one row. 1 when written, 0 when it was already.
 */
const RECORD_ATTEMPT = `
if redis.call('HGET', KEYS[1], 'attempt_token') == ARGV[1] then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'attempt_count', ARGV[4], 'next_attempt_at', ARGV[5], 'attempt_token', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 1
`;

/**
 * KEYS[1] event. ARGV ttl_ms, then the event's field, value pairs.
 * Creates the event unless it exists: 'created', or what it found
 * (CreateOutcome: 'retrying' for a pending event a run has tried or a
 * resend owns, else its state).
 * What makes an event with a fixed id (job.completed of a job) safe to
 * create again after a crash: the second time finds it and says where it is.
 */
const CREATE_IF_ABSENT = `${OWNED_BY_A_RUN}
local h = redis.call('HMGET', KEYS[1], 'state', 'attempt_count', 'resend_token')
if h[1] == 'pending' and ownedByARun(h) then return 'retrying' end
if h[1] then return h[1] end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 'created'
`;

type ScriptRedis = Redis & {
  inferWebhookMarkResend(key: string, attempts: string, tenant: string, now: number, token: string, ttlMs: number): Promise<string>;
  inferWebhookUnmarkResend(key: string, token: string, was: string): Promise<number>;
  inferWebhookRecordAttempt(key: string, attempts: string, token: string, attempt: string, state: string, count: string, nextAt: string, ttlMs: number): Promise<number>;
  inferWebhookFailIfPending(key: string, ttlMs: number, unlessOwned: '1' | '0'): Promise<[0] | [1, string | null, string | null]>;
  inferWebhookCreateIfAbsent(key: string, ttlMs: number, ...fieldsAndValues: string[]): Promise<CreateOutcome>;
};

/**
 * What creating an event with a fixed id found: 'created' (it was not
 * there); 'pending' (there, never attempted, no resend: its delivery may
 * never have been queued); 'retrying' (pending, but a run owns it: one that
 * has attempted it, or a resend's); or the final state it ended in.
 */
export type CreateOutcome = 'created' | 'retrying' | DeliveryState;

const iso = (ms: number) => new Date(ms).toISOString();

export class DeliveryLog {
  private readonly k: ReturnType<typeof keys>;
  private readonly redis: ScriptRedis;

  constructor(redis: Redis, prefix: string) {
    this.k = keys(prefix);
    if (!('inferWebhookMarkResend' in redis)) redis.defineCommand('inferWebhookMarkResend', { numberOfKeys: 2, lua: MARK_RESEND });
    if (!('inferWebhookUnmarkResend' in redis)) redis.defineCommand('inferWebhookUnmarkResend', { numberOfKeys: 1, lua: UNMARK_RESEND });
    if (!('inferWebhookFailIfPending' in redis)) redis.defineCommand('inferWebhookFailIfPending', { numberOfKeys: 1, lua: FAIL_IF_PENDING });
    if (!('inferWebhookCreateIfAbsent' in redis)) redis.defineCommand('inferWebhookCreateIfAbsent', { numberOfKeys: 1, lua: CREATE_IF_ABSENT });
    if (!('inferWebhookRecordAttempt' in redis)) redis.defineCommand('inferWebhookRecordAttempt', { numberOfKeys: 2, lua: RECORD_ATTEMPT });
    this.redis = redis as ScriptRedis;
  }

  /**
   * Create events with fixed ids, each unless it exists, in one round trip
   * (and one more to list them). Answers, per event, what it found
   * (CreateOutcome), so a caller retrying after a crash knows whether a
   * delivery may still be to queue ('created', 'pending') or not. A pending
   * one is listed under its subject again: its creator may have died before
   * listing it, and `list` reads an id listed twice once.
   */
  async createManyIfAbsent(events: readonly StoredEvent[], ttlMs: number): Promise<CreateOutcome[]> {
    const creates = (this.redis.pipeline() as ChainableCommander & { inferWebhookCreateIfAbsent(key: string, ttlMs: number, ...fv: string[]): ChainableCommander });
    for (const e of events) creates.inferWebhookCreateIfAbsent(this.k.webhookEvent(e.id), ttlMs, ...Object.entries(eventFields(e)).flat());
    const outcomes = ((await creates.exec()) ?? []).map(([err, outcome]) => {
      if (err) throw err;
      return outcome as CreateOutcome;
    });
    const listed = events.filter((_, i) => outcomes[i] === 'created' || outcomes[i] === 'pending');
    if (listed.length > 0) {
      const pipe = this.redis.pipeline();
      for (const e of listed) {
        const index = this.k.webhookDeliveries(e.subject.object, e.subject.id);
        // A new list gets the TTL (NX); one that is there is only ever lengthened (GT): an event listed
        // before may be retrying past this one's TTL. (GT alone leaves a new list without any TTL.)
        pipe.rpush(index, e.id).pexpire(index, ttlMs, 'NX').pexpire(index, ttlMs, 'GT');
      }
      for (const [err] of (await pipe.exec()) ?? []) if (err) throw err;
    }
    return outcomes;
  }

  async get(eventId: string): Promise<StoredEvent | null> {
    return toStored(await this.redis.hgetall(this.k.webhookEvent(eventId)));
  }

  /** Append an attempt and move the event to its next state, atomically. */
  async recordAttempt(
    event: StoredEvent,
    attempt: WebhookAttempt,
    next: { state: DeliveryState; nextAttemptAt: number | null },
    ttlMs: number,
  ): Promise<void> {
    const key = this.k.webhookEvent(event.id);
    const attempts = this.k.webhookAttempts(event.id);
    const index = this.k.webhookDeliveries(event.subject.object, event.subject.id);
    await Promise.all([
      this.redis.inferWebhookRecordAttempt(
        key,
        attempts,
        randomUUID(),
        JSON.stringify(attempt),
        next.state,
        String(attempt.attempt),
        next.nextAttemptAt === null ? '' : String(next.nextAttemptAt),
        ttlMs,
      ),
      // Another slot than the event's: sent beside the script, not in it (only its expiry moves). Never
      // shortened (GT): the subject's other events may still be retrying.
      this.redis.pexpire(index, ttlMs, 'GT'),
    ]);
  }

  /**
   * End a `pending` event as `failed` when its delivery run is lost for
   * good; true when it did. `unlessOwned`: not one a run owns (it has
   * attempted it, or a resend's), for a caller that is not that run.
   */
  async failIfPending(eventId: string, ttlMs: number, options: { unlessOwned?: boolean } = {}): Promise<boolean> {
    const [failed, object, id] = await this.redis.inferWebhookFailIfPending(this.k.webhookEvent(eventId), ttlMs, options.unlessOwned ? '1' : '0');
    if (failed !== 1) return false;
    // The event lives ttl_ms more: its subject's list too, or GET …/webhook_deliveries stops showing it
    // first. Never shortened (GT): the subject's other events may still be retrying.
    if ((object === 'job' || object === 'batch') && id) await this.redis.pexpire(this.k.webhookDeliveries(object, id), ttlMs, 'GT');
    return true;
  }

  /**
   * Make an ended event pending again for a resend, if it is this tenant's:
   * 'missing', 'pending' (it is still being delivered: nothing to resend
   * yet), or the state it had. `token` names this resend (see MARK_RESEND).
   */
  async markResend(eventId: string, tenant: string, now: number, token: string, ttlMs: number): Promise<'missing' | 'pending' | { was: Exclude<DeliveryState, 'pending'> }> {
    const r = await this.redis.inferWebhookMarkResend(this.k.webhookEvent(eventId), this.k.webhookAttempts(eventId), tenant, now, token, ttlMs);
    if (r === 'other' || r === 'missing') return 'missing';
    if (r === 'pending') return 'pending';
    return { was: r === 'succeeded' ? 'succeeded' : 'failed' };
  }

  /**
   * Undo `markResend` (the one named `token`) when the resend could not be
   * queued: the event has the state it had (a delivered one stays
   * delivered). An event gone meanwhile stays gone.
   */
  async unmarkResend(eventId: string, token: string, was: Exclude<DeliveryState, 'pending'>): Promise<void> {
    await this.redis.inferWebhookUnmarkResend(this.k.webhookEvent(eventId), token, was);
  }

  /** One event with its attempts; null when unknown, expired, or another tenant's. */
  async delivery(eventId: string, tenant: string): Promise<WebhookDelivery | null> {
    const [one] = await this.deliveries([eventId], tenant);
    return one ?? null;
  }

  /** Every event of a job or batch, oldest first (only the tenant's own). */
  async list(subject: WebhookSubject, tenant: string): Promise<WebhookDelivery[]> {
    const ids = await this.redis.lrange(this.k.webhookDeliveries(subject.object, subject.id), 0, -1);
    // An id is pushed once per event, but a push sent again after a lost reply lists it twice: read it once.
    return this.deliveries([...new Set(ids)], tenant);
  }

  private async deliveries(ids: readonly string[], tenant: string): Promise<WebhookDelivery[]> {
    if (ids.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hgetall(this.k.webhookEvent(id)).lrange(this.k.webhookAttempts(id), 0, -1);
    const results = (await pipe.exec()) ?? [];
    const out: WebhookDelivery[] = [];
    for (let i = 0; i < ids.length; i++) {
      const [hashErr, hash] = results[2 * i] ?? [];
      const [listErr, list] = results[2 * i + 1] ?? [];
      if (hashErr) throw hashErr;
      if (listErr) throw listErr;
      const e = toStored(hash as Record<string, string>);
      if (!e || e.tenant !== tenant) continue;
      out.push(toDelivery(e, (list as string[]).map((s) => JSON.parse(s) as WebhookAttempt)));
    }
    return out;
  }
}

function eventFields(e: StoredEvent): Record<string, string> {
  return {
    id: e.id,
    tenant: e.tenant,
    type: e.type,
    url: e.url,
    subject_object: e.subject.object,
    subject_id: e.subject.id,
    body: e.body,
    created_at: String(e.createdAt),
    state: e.state,
    attempt_count: String(e.attemptCount),
    next_attempt_at: e.nextAttemptAt === null ? '' : String(e.nextAttemptAt),
  };
}

function toStored(h: Record<string, string>): StoredEvent | null {
  if (!h.id || !h.tenant || !h.body || !h.url) return null;
  return {
    id: h.id,
    tenant: h.tenant,
    type: h.type as WebhookEventType,
    url: h.url,
    subject: { object: h.subject_object === 'batch' ? 'batch' : 'job', id: h.subject_id ?? '' },
    body: h.body,
    createdAt: Number(h.created_at),
    state: (h.state as DeliveryState | undefined) ?? 'pending',
    attemptCount: Number(h.attempt_count ?? 0),
    nextAttemptAt: h.next_attempt_at ? Number(h.next_attempt_at) : null,
    resendToken: h.resend_token || null,
  };
}

function toDelivery(e: StoredEvent, attempts: WebhookAttempt[]): WebhookDelivery {
  return {
    id: e.id,
    object: 'webhook_delivery',
    event_type: e.type,
    url: e.url,
    subject: e.subject,
    created_at: iso(e.createdAt),
    state: e.state,
    attempt_count: e.attemptCount,
    next_attempt_at: e.nextAttemptAt === null ? null : iso(e.nextAttemptAt),
    attempts,
  };
}
