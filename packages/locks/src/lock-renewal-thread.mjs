// @ts-check
/**
 * The lock-renewal thread (see lock-renewal.ts). Plain JavaScript on
 * purpose: the worker runs from TypeScript through tsx's loader, which a
 * thread would have to start again (a quarter of a second of CPU); this
 * file needs none of it, so the thread is up at once, whatever the main
 * thread does next.
 *
 * It renews the BullMQ locks of the jobs each consumer holds every
 * lockMs / 2, with a Redis connection of its own, so a model run that holds
 * the main thread's event loop does not let them lapse. It stops renewing
 * while the main thread has not beaten for longer than maxRunMs: a worker
 * that hangs loses its locks, and other workers take its work back.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Redis } from 'ioredis';

/**
 * BullMQ's extendLocks script (its lock key and stalled set, and the same
 * answer: the ids it could not renew), with JSON for the lists: a lock is
 * extended only while it still carries the token it was taken with.
 *
 * Then the takes in flight (ARGV[5], their tokens; ARGV[6], token
 * prefixes, for a BullMQ Worker that takes by itself): a take that Redis
 * ran while the main thread was blocked in a model run has locked its jobs,
 * and its reply waits unread until the run ends. Those jobs are found in
 * the queue's active list (KEYS[2]) by their lock's token, as a take whose
 * reply was lost is recovered, and renewed too.
 */
const EXTEND_LOCKS = `
local tokens = cjson.decode(ARGV[2])
local ids = cjson.decode(ARGV[3])
local failed = {}
for i = 1, #ids do
  local lockKey = ARGV[1] .. ids[i] .. ':lock'
  if redis.call('GET', lockKey) == tokens[i] then
    redis.call('SET', lockKey, tokens[i], 'PX', ARGV[4])
    redis.call('SREM', KEYS[1], ids[i])
  else
    failed[#failed + 1] = ids[i]
  end
end
local pending = cjson.decode(ARGV[5])
local prefixes = cjson.decode(ARGV[6])
if #pending > 0 or #prefixes > 0 then
  local taking = {}
  for _, token in ipairs(pending) do taking[token] = true end
  for _, id in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    local lockKey = ARGV[1] .. id .. ':lock'
    local token = redis.call('GET', lockKey)
    if token then
      local ours = taking[token]
      if not ours then
        for _, prefix in ipairs(prefixes) do
          if string.sub(token, 1, #prefix) == prefix then ours = true break end
        end
      end
      if ours then
        redis.call('SET', lockKey, token, 'PX', ARGV[4])
        redis.call('SREM', KEYS[1], id)
      end
    end
  end
end
return failed
`;

if (!parentPort) throw new Error('lock-renewal-thread.mjs runs as a worker thread');
const port = parentPort;
/** When the main thread's event loop last turned (ms since the epoch), written there every beat. */
const beat = /** @type {BigInt64Array} */ (workerData.beat);

/**
 * @typedef {{ host?: string, port?: number, path?: string, username?: string, password?: string, db?: number, family?: number, tls?: object }} Target
 * @typedef {{ redis: Redis, users: number }} Connection
 * @typedef {{ header: Int32Array, bytes: Uint8Array }} Snapshot
 * @typedef {{ held: Array<[string, string]>, taking: string[], prefixes: string[] }} Held
 * @typedef {{ id: number, conn: Connection, key: string, stalledKey: string, activeKey: string, baseKey: string, lockMs: number, maxRunMs: number,
 *             held: Snapshot, timer: NodeJS.Timeout, renewing: boolean, hung: boolean }} Queue
 */

/** One connection per Redis the consumers use (usually one), shared by their queues. */
/** @type {Map<string, Connection>} */
const connections = new Map();
/** @type {Map<number, Queue>} */
const queues = new Map();

/** @param {Target} target */
function connect(target) {
  const key = JSON.stringify(target);
  let conn = connections.get(key);
  if (!conn) {
    // No offline queue: a renewal while Redis is away fails at once and is tried again at the next tick.
    const redis = new Redis({ ...target, enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: false });
    redis.defineCommand('extendHeldLocks', { numberOfKeys: 2, lua: EXTEND_LOCKS });
    redis.on('error', () => {}); // reported per renewal, by the main thread
    conn = { redis, users: 0 };
    connections.set(key, conn);
  }
  conn.users++;
  return { conn, key };
}

/** @param {SharedArrayBuffer} buffer @returns {Snapshot} */
const snapshot = (buffer) => ({ header: new Int32Array(buffer, 0, 2), bytes: new Uint8Array(buffer, 8) });
const decoder = new TextDecoder();

/**
 * What a consumer holds (`held`: `[[id, token], …]`) and its takes in
 * flight (`taking`, tokens; `prefixes`, of tokens), read under the
 * snapshot's sequence lock: a read that overlapped a write (the count odd —
 * its low bit, as it wraps past 2^31 — or moved, or text that does not
 * parse) is read again. Null when no steady read came (the next tick tries
 * again).
 * @param {Snapshot} s @returns {Held | null}
 */
function readHeld(s) {
  for (let attempt = 0; attempt < 1000; attempt++) {
    const before = Atomics.load(s.header, 0);
    if ((before & 1) !== 0) continue;
    const copy = s.bytes.slice(0, Atomics.load(s.header, 1));
    if (Atomics.load(s.header, 0) !== before) continue;
    if (copy.length === 0) return { held: [], taking: [], prefixes: [] };
    try {
      return JSON.parse(decoder.decode(copy));
    } catch {
      // torn after all: read again
    }
  }
  return null;
}

/** The main thread beats every 500 ms: silent longer than this (or a quarter of the lock, when shorter), it may be in a run. */
const BLOCKED_AFTER_MS = 1000;

/** @param {Queue} q */
async function renew(q) {
  if (q.renewing) return;
  const snapshot = readHeld(q.held);
  if (!snapshot || (snapshot.held.length === 0 && snapshot.taking.length === 0 && snapshot.prefixes.length === 0)) return;
  const { held } = snapshot;
  const silentMs = Date.now() - Number(Atomics.load(beat, 0));
  // A take's reply sits unread only while the event loop is blocked; else it is read (and its jobs held)
  // within a turn, and the active list is not worth a scan.
  const blocked = silentMs > Math.min(BLOCKED_AFTER_MS, q.lockMs / 4);
  const taking = blocked ? snapshot.taking : [];
  const prefixes = blocked ? snapshot.prefixes : [];
  if (held.length === 0 && taking.length === 0 && prefixes.length === 0) return;
  if (silentMs > q.maxRunMs) {
    // The main thread is stuck (a run past WORKER_MAX_RUN_MS, or a hang): let the locks lapse.
    if (!q.hung) port.postMessage({ type: 'hung', queue: q.id, silentMs, jobs: held.length });
    q.hung = true;
    return;
  }
  q.hung = false;
  q.renewing = true;
  const ids = held.map(([id]) => id);
  const tokens = held.map(([, token]) => token);
  try {
    // @ts-expect-error: a command defined above
    const failed = /** @type {string[]} */ (
      await q.conn.redis.extendHeldLocks(q.stalledKey, q.activeKey, q.baseKey, JSON.stringify(tokens), JSON.stringify(ids), q.lockMs, JSON.stringify(taking), JSON.stringify(prefixes))
    );
    port.postMessage({ type: 'renewed', queue: q.id, ids, failed });
  } catch (err) {
    port.postMessage({ type: 'error', queue: q.id, message: /** @type {Error} */ (err).message, jobs: ids.length });
  } finally {
    q.renewing = false;
  }
}

port.on('message', (/** @type {any} */ m) => {
  if (m.type === 'open') {
    const { conn, key } = connect(m.target);
    /** @type {Queue} */
    const q = { id: m.queue, conn, key, stalledKey: m.stalledKey, activeKey: m.activeKey, baseKey: m.baseKey, lockMs: m.lockMs, maxRunMs: m.maxRunMs, held: snapshot(m.buffer), timer: setInterval(() => renew(q).catch(() => undefined), Math.max(250, Math.floor(m.lockMs / 2))), renewing: false, hung: false };
    queues.set(m.queue, q);
    return;
  }
  const q = queues.get(m.queue);
  if (!q) return;
  if (m.type === 'snapshot') {
    // The held set outgrew its buffer: the main thread writes into this one from now on.
    q.held = snapshot(m.buffer);
  } else if (m.type === 'close') {
    clearInterval(q.timer);
    queues.delete(m.queue);
    if (--q.conn.users === 0) {
      connections.delete(q.key);
      q.conn.redis.disconnect();
    }
  }
});
