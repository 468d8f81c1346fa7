/**
 * Lua scripts for the job record's state changes. Each runs atomically in
 * Redis, so a cancel racing a completion has exactly one winner: whichever
 * script runs first decides, the other sees an ended status and does nothing.
 */

/**
 * KEYS[1] job. ARGV ttl_ms, then field, value pairs. One command instead of
 * MULTI/HSET/PEXPIRE/EXEC: submit is the gateway's hot path.
 */
export const CREATE_JOB = `
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
`;

/** KEYS[1] job. ARGV started_at. Returns the status before: only queued/running move to running. */
export const START_JOB = `
local s = redis.call('HGET', KEYS[1], 'status')
if not s then return 'missing' end
if s == 'queued' or s == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1])
end
return s
`;

/**
 * KEYS[1] job. ARGV status, completed_at, output, error, metrics, ttl_ms, channel, id.
 * The message published is "<id>\n<JSON of the ended hash as [field, value, ...]>",
 * so a waiting request answers without reading the record again.
 * Returns 1 when this call ended the job, 0 when it had already ended (canceled).
 */
export const END_JOB = `
local s = redis.call('HGET', KEYS[1], 'status')
if s ~= 'running' and s ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'completed_at', ARGV[2], 'output', ARGV[3], 'error', ARGV[4], 'metrics', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', ARGV[7], ARGV[8] .. '\\n' .. cjson.encode(redis.call('HGETALL', KEYS[1])))
return 1
`;

/**
 * KEYS[1] job. ARGV completed_at, ttl_ms, channel, id, tenant, error.
 * Returns 'canceled' when this call canceled it, 'missing' for an unknown job
 * or another tenant's, 'already_canceled', or the other ended status it had.
 */
export const CANCEL_JOB = `
local s = redis.call('HGET', KEYS[1], 'status')
if not s or redis.call('HGET', KEYS[1], 'tenant') ~= ARGV[5] then return 'missing' end
if s == 'queued' or s == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'canceled', 'completed_at', ARGV[1], 'error', ARGV[6])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PUBLISH', ARGV[3], ARGV[4] .. '\\n' .. cjson.encode(redis.call('HGETALL', KEYS[1])))
  return 'canceled'
end
if s == 'canceled' then return 'already_canceled' end
return s
`;

/**
 * KEYS[1] idempotency key. ARGV job id, ttl_ms. Claims the key for this job
 * unless an earlier request holds it; returns the id of the job that owns it.
 */
export const CLAIM_IDEMPOTENCY_KEY = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return ARGV[1] end
return redis.call('GET', KEYS[1])
`;
