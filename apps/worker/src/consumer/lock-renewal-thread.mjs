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
return failed
`;

if (!parentPort) throw new Error('lock-renewal-thread.mjs runs as a worker thread');
const port = parentPort;
/** When the main thread's event loop last turned (ms since the epoch), written there every beat. */
const beat = /** @type {BigInt64Array} */ (workerData.beat);

/**
 * @typedef {{ host?: string, port?: number, path?: string, username?: string, password?: string, db?: number, family?: number, tls?: object }} Target
 * @typedef {{ redis: Redis, users: number }} Connection
 * @typedef {{ id: number, conn: Connection, key: string, stalledKey: string, baseKey: string, lockMs: number, maxRunMs: number,
 *             held: Map<string, string>, timer: NodeJS.Timeout | undefined, renewing: boolean, hung: boolean }} Queue
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
    redis.defineCommand('extendHeldLocks', { numberOfKeys: 1, lua: EXTEND_LOCKS });
    redis.on('error', () => {}); // reported per renewal, by the main thread
    conn = { redis, users: 0 };
    connections.set(key, conn);
  }
  conn.users++;
  return { conn, key };
}

/** @param {Queue} q */
async function renew(q) {
  if (q.renewing || q.held.size === 0) return;
  const silentMs = Date.now() - Number(Atomics.load(beat, 0));
  if (silentMs > q.maxRunMs) {
    // The main thread is stuck (a run past WORKER_MAX_RUN_MS, or a hang): let the locks lapse.
    if (!q.hung) port.postMessage({ type: 'hung', queue: q.id, silentMs, jobs: q.held.size });
    q.hung = true;
    return;
  }
  q.hung = false;
  q.renewing = true;
  const ids = [...q.held.keys()];
  const tokens = ids.map((id) => q.held.get(id));
  try {
    // @ts-expect-error: a command defined above
    const failed = /** @type {string[]} */ (await q.conn.redis.extendHeldLocks(q.stalledKey, q.baseKey, JSON.stringify(tokens), JSON.stringify(ids), q.lockMs));
    port.postMessage({ type: 'renewed', queue: q.id, ids, failed });
  } catch (err) {
    port.postMessage({ type: 'error', queue: q.id, message: /** @type {Error} */ (err).message, jobs: ids.length });
  } finally {
    q.renewing = false;
  }
}

/** Ticks only while something is held: an idle worker's thread sleeps. @param {Queue} q */
function tick(q) {
  if (q.held.size > 0 && !q.timer) {
    q.timer = setInterval(() => void renew(q), Math.max(250, Math.floor(q.lockMs / 2)));
  } else if (q.held.size === 0 && q.timer) {
    clearInterval(q.timer);
    q.timer = undefined;
  }
}

port.on('message', (/** @type {any} */ m) => {
  if (m.type === 'open') {
    const { conn, key } = connect(m.target);
    queues.set(m.queue, { id: m.queue, conn, key, stalledKey: m.stalledKey, baseKey: m.baseKey, lockMs: m.lockMs, maxRunMs: m.maxRunMs, held: new Map(), timer: undefined, renewing: false, hung: false });
    return;
  }
  const q = queues.get(m.queue);
  if (!q) return;
  if (m.type === 'changes') {
    // [id, token] holds it, [id, null] lets it go: the last change of each id in one turn of the main thread.
    for (const [id, token] of /** @type {Array<[string, string | null]>} */ (m.changes)) {
      if (token === null) q.held.delete(id);
      else q.held.set(id, token);
    }
    tick(q);
  } else if (m.type === 'close') {
    q.held.clear();
    tick(q);
    queues.delete(m.queue);
    if (--q.conn.users === 0) {
      connections.delete(q.key);
      q.conn.redis.disconnect();
    }
  }
});
