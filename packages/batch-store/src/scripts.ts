/**
 * Lua scripts for a batch's state changes. Each runs atomically, so a cancel
 * racing the last chunk has exactly one winner, and a chunk that runs twice
 * (its worker died after writing) is counted once.
 *
 * Keys of one batch: KEYS[1] the record hash, KEYS[2] the results hash
 * (chunk → its stored results), KEYS[3] the pending hash (chunk → manifest of a chunk not
 * yet ended), KEYS[4] the inputs hash (chunk → packed input bytes of a chunk
 * not yet run). While the batch runs every key lives for UNENDED +
 * RESULT_TTL; when it ends, the first three get RESULT_TTL and the inputs
 * are deleted (nothing will run them).
 *
 * Statuses: queued ──first chunk starts──▶ running ──last chunk of a sealed
 * upload ends──▶ completed; queued | running ──cancel──▶ canceled.
 */

/** Shared: end the batch when the upload is sealed and every chunk has ended. */
const COMPLETE_IF_DONE = `
local function completeIfDone(now, ttl)
  local h = redis.call('HMGET', KEYS[1], 'sealed', 'chunks', 'chunks_done', 'started_at')
  if h[1] ~= '1' or tonumber(h[2]) ~= tonumber(h[3]) then return 'ok' end
  if not h[4] or h[4] == '' then redis.call('HSET', KEYS[1], 'started_at', now) end
  redis.call('HSET', KEYS[1], 'status', 'completed', 'completed_at', now)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
  redis.call('DEL', KEYS[4])
  return 'completed'
end
`;

/** Only a queued or running batch changes; 'completed' is kept for the one call that completes it. */
const LIVE = `
local s = redis.call('HGET', KEYS[1], 'status')
if not s then return 'missing' end
if s ~= 'queued' and s ~= 'running' then return 'ended' end
`;

/**
 * KEYS batch, pending, inputs. ARGV chunk, count, failed (items invalid at
 * upload), manifest, long_ttl, packed inputs (empty when no row is valid).
 * Registers one more chunk of the upload. Returns 'ok', 'ended' (canceled
 * while uploading) or 'missing'.
 */
export const ADD_CHUNK = `${LIVE}
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[6])
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
redis.call('HINCRBY', KEYS[1], 'total', ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('HINCRBY', KEYS[1], 'failed', ARGV[3]) end
redis.call('HINCRBY', KEYS[1], 'chunks', 1)
return 'ok'
`;

/** KEYS batch. ARGV now. A worker takes a chunk: the batch is running. Returns the status before, or 'missing'. */
export const START_CHUNK = `
local s = redis.call('HGET', KEYS[1], 'status')
if not s then return 'missing' end
if s == 'queued' then redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1]) end
return s
`;

/**
 * KEYS batch, results, pending, inputs. ARGV chunk, results (stored form), succeeded, failed, now, ttl, long_ttl.
 * `failed` counts only items that failed while running (invalid ones were
 * counted at upload). It leaves a `queued` batch queued: only a worker
 * starting on a chunk (START_CHUNK) makes it `running`, not the gateway
 * ending a chunk of invalid lines, nor the sweep one that never ran. Returns 'ok', 'completed' (this chunk ended the
 * batch), 'duplicate' (already written), 'ended' or 'missing' (the results
 * of a chunk of a canceled batch are dropped: they were counted canceled
 * when it was canceled).
 */
export const FINISH_CHUNK = `${COMPLETE_IF_DONE}${LIVE}
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 'duplicate' end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
if tonumber(ARGV[3]) > 0 then redis.call('HINCRBY', KEYS[1], 'succeeded', ARGV[3]) end
if tonumber(ARGV[4]) > 0 then redis.call('HINCRBY', KEYS[1], 'failed', ARGV[4]) end
redis.call('HINCRBY', KEYS[1], 'chunks_done', 1)
return completeIfDone(ARGV[5], ARGV[6])
`;

/** KEYS batch, results, pending, inputs. ARGV now, ttl. The upload ended: no more chunks. Returns 'ok', 'completed', or as ADD_CHUNK. */
export const SEAL = `${COMPLETE_IF_DONE}${LIVE}
redis.call('HSET', KEYS[1], 'sealed', '1')
return completeIfDone(ARGV[1], ARGV[2])
`;

/**
 * KEYS batch, results, pending, inputs. ARGV now, ttl, tenant.
 * Every item without a result yet is counted canceled, now: the counts and
 * the results are final from this moment. Returns {'canceled', then the
 * record's fields and values as it leaves it}, or 'missing' (unknown, or
 * another tenant's), 'already_canceled' or 'completed'.
 */
export const CANCEL = `
local s = redis.call('HGET', KEYS[1], 'status')
if not s or redis.call('HGET', KEYS[1], 'tenant') ~= ARGV[3] then return 'missing' end
if s == 'canceled' then return 'already_canceled' end
if s ~= 'queued' and s ~= 'running' then return s end
local c = redis.call('HMGET', KEYS[1], 'total', 'succeeded', 'failed')
local canceled = tonumber(c[1] or 0) - tonumber(c[2] or 0) - tonumber(c[3] or 0)
redis.call('HSET', KEYS[1], 'status', 'canceled', 'completed_at', ARGV[1], 'sealed', '1', 'canceled', canceled)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
redis.call('DEL', KEYS[4])
return {'canceled', unpack(redis.call('HGETALL', KEYS[1]))}
`;

/**
 * KEYS batch, results, pending, inputs. Forgets a batch whose upload failed
 * (its keys deleted), unless it was canceled meanwhile: its cancel was
 * answered, and its batch.completed sent, so it stays as any canceled batch.
 * Returns 1 when it was forgotten, else 0.
 */
export const DISCARD = `
if redis.call('HGET', KEYS[1], 'status') == 'canceled' then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return 1
`;
