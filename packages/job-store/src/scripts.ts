/**
 * Lua scripts of the interactive path. Each runs atomically in Redis, so a
 * cancel racing a completion has exactly one winner, and each touches the
 * keys of one queue's hash tag only (packages/contract `interactiveKeys`).
 *
 * An interactive queue is a BullMQ queue whose hot-path operations are these
 * scripts instead of BullMQ's add / moveToActive / moveToFinished: BullMQ's
 * own scripts cost ~36 Redis commands a job (events streams, metrics,
 * parents, rate limits, priorities the platform does not use), more than
 * all the rest of a job together. The keys and the job hash keep BullMQ's
 * layout, so BullMQ's stalled check, lock extension, job counts, pause,
 * `obliterate` and the dashboard work on them unchanged.
 *
 * The life of an envelope (one BullMQ job carrying many jobs):
 *
 *   ENQUEUE ──▶ wait ──FETCH──▶ active ──FINISH──▶ (deleted; one record per job)
 *                 ▲                 │
 *                 └── stalled check ┘ (its worker died: lock lapsed)
 *
 * Redis full (maxmemory with `noeviction`, the only safe policy for a
 * queue): ENQUEUE's first write is refused, so a submit writes nothing and
 * answers 503; FETCH and FINISH are declared `allow-oom`, because taking and
 * ending envelopes is what frees memory (an envelope's inputs are deleted,
 * its jobs' records are small): a full Redis drains instead of sticking.
 *
 * Job records exist only once a job has ended, written with `SET … NX`:
 * FINISH and CANCEL_COMMIT both write a job's record that way, so whichever
 * comes first ends the job and the other changes nothing. Until then a job
 * is found through the tag's job index (job id → envelope) and rendered from
 * the envelope: `queued`, or `running` once a worker has taken it.
 */

/** First line of a script that must run even when Redis is over maxmemory (Redis 7 script flags). */
const ALLOW_OOM = '#!lua flags=allow-oom\n';

/** Lua's unpack() fails past a few thousand values: write long argument lists in slices. */
const IN_SLICES = `
local function inSlices(command, key, list)
  for from = 1, #list, 1000 do
    redis.call(command, key, unpack(list, from, math.min(from + 999, #list)))
  end
end
`;

/** Per job: "<channel> <job id>\\n" entries of long polls waiting on it, as GET with Prefer: wait leaves them. */
const WATCHERS = `
local function watchersOf(list)
  local byJob = {}
  if list then
    for channel, id in string.gmatch(list, '(%S+) (%S+)\\n') do
      local chans = byJob[id]
      if not chans then chans = {}; byJob[id] = chans end
      chans[channel] = true
    end
  end
  return byJob
end
local function frame(id, record) return id .. ' ' .. #record .. '\\n' .. record end
`;

/**
 * KEYS[1] wait, KEYS[2] marker, KEYS[3] queued counter, KEYS[4] job index, KEYS[5] the envelope's job hash,
 * KEYS[6] the queue's queued-per-tenant hash, KEYS[7] the queue's deadlines (sorted set: job id by epoch ms),
 * KEYS[8] the queue's meta (its `closed` field: the version is draining and its workers are about to unload it;
 * its allowance of MAX_QUEUE_DEPTH), KEYS[9] the envelope's inputs key (used when ARGV[8] is "1"),
 * KEYS[10] the queue's allowances of TENANT_MAX_QUEUED (hash: tenant → allowance).
 * Allowances are stored as "<instances> <the limit they were granted under>": one granted under another
 * limit than this call's counts as none (see allowanceValue).
 * ARGV[1] envelope id, ARGV[2] index value ("<queue name>:<envelope id>"), ARGV[3] instances,
 * ARGV[4] MAX_QUEUE_DEPTH ('': no limit; its allowance is meta's `allow`), ARGV[5] now,
 * ARGV[6] data (JSON), ARGV[7] input bytes (inline), ARGV[8] "1" when the input bytes are instead in KEYS[9]
 * (written just before, with an expiry: see EnvelopeQueue.enqueue),
 * ARGV[9] TENANT_MAX_QUEUED ('': tenants are not counted), ARGV[10] T,
 * then T × (tenant, its instances here), then D, then D × (job id, deadline), then the job ids.
 * A queue may hold what its allowances allow (see Allowances): instances, and each tenant's instances.
 * Returns {1, queued after}; or, writing
 * nothing (and deleting KEYS[9]), {0, queued, allowed} when the envelope does not fit in the queue's allowance,
 * {-1, tenant, that tenant's queued here, its allowance here} when a tenant's jobs do not fit in theirs,
 * {-2} when the queue is closed; {-3} when KEYS[9] should hold the inputs and does not.
 */
export const ENQUEUE = `${IN_SLICES}
local external = ARGV[8] == '1'
if external and redis.call('EXISTS', KEYS[9]) == 0 then return {-3} end
local function refuse(reply)
  if external then redis.call('DEL', KEYS[9]) end
  return reply
end
-- An allowance granted under this limit: its instances; else none.
local function allowed(value, limit)
  if not value then return 0 end
  local instances, under = string.match(value, '^(%d+) (%d+)$')
  if under ~= limit then return 0 end
  return tonumber(instances)
end
local depthLimit = ARGV[4]
local meta = redis.call('HMGET', KEYS[8], 'closed', 'allow')
if meta[1] then return refuse({-2}) end
local n = tonumber(ARGV[3])
local cap = ARGV[9]
local t = tonumber(ARGV[10])
local i = 11
local tq = {}
if cap ~= '' and t > 0 then
  local names = {}
  for k = 1, t do names[k] = ARGV[i + 2 * (k - 1)] end
  local counts = redis.call('HMGET', KEYS[6], unpack(names))
  local allowances = redis.call('HMGET', KEYS[10], unpack(names))
  for k = 1, t do
    local here, count, most = tonumber(counts[k] or '0'), tonumber(ARGV[i + 2 * k - 1]), allowed(allowances[k], cap)
    if here + count > most then return refuse({-1, names[k], here, most}) end
    tq[#tq + 1] = names[k]
    tq[#tq + 1] = count
  end
end
i = i + 2 * t
-- The first write: Redis refuses it when over maxmemory, which would leave an inputs key written just before behind.
local queued = redis.pcall('INCRBY', KEYS[3], n)
if type(queued) == 'table' and queued.err then return refuse(redis.error_reply(queued.err)) end
if depthLimit ~= '' then
  local most = allowed(meta[2], depthLimit)
  if queued > most then
    redis.call('DECRBY', KEYS[3], n)
    return refuse({0, queued - n, most})
  end
end
for k = 1, #tq, 2 do redis.call('HINCRBY', KEYS[6], tq[k], tq[k + 1]) end
local fields = {'name', 'envelope', 'data', ARGV[6], 'opts', '{}', 'timestamp', ARGV[5], 'delay', 0, 'priority', 0, 'n', n}
if external then
  redis.call('PERSIST', KEYS[9])
  fields[#fields + 1] = 'ix'
  fields[#fields + 1] = '1'
else
  fields[#fields + 1] = 'in'
  fields[#fields + 1] = ARGV[7]
end
if #tq > 0 then
  fields[#fields + 1] = 'tq'
  fields[#fields + 1] = table.concat(tq, ' ')
end
redis.call('HSET', KEYS[5], unpack(fields))
local d = tonumber(ARGV[i])
i = i + 1
for k = 1, d do
  redis.call('ZADD', KEYS[7], ARGV[i + 1], ARGV[i])
  i = i + 2
end
local index = {}
for j = i, #ARGV do
  index[#index + 1] = ARGV[j]
  index[#index + 1] = ARGV[2]
end
inSlices('HSET', KEYS[4], index)
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, '0')
return {1, queued}
`;

/**
 * KEYS[1] a queue's count: its `queued` (a string) or its queued-per-tenant hash; KEYS[2] the hash holding the
 * allowance (its meta, or its tenant allowances). ARGV[1] the count's field ('' for the string), ARGV[2] the
 * allowance's field, ARGV[3] the most to take back. Lowers the allowance (whatever limit granted it, which it
 * keeps) by up to ARGV[3], never below the count (its jobs stay allowed): returns what it took back.
 */
export const RECLAIM_ALLOWANCE = `
local own = tonumber((ARGV[1] == '' and redis.call('GET', KEYS[1]) or redis.call('HGET', KEYS[1], ARGV[1])) or '0')
local allowed, under = string.match(redis.call('HGET', KEYS[2], ARGV[2]) or '', '^(%d+) (%d+)$')
if not allowed then return 0 end
local take = math.min(tonumber(allowed) - own, tonumber(ARGV[3]))
if take <= 0 then return 0 end
-- %d: Lua writes a number past 10^14 as 5e+14, which the '^(%d+) ' patterns here and in ENQUEUE cannot read.
redis.call('HSET', KEYS[2], ARGV[2], string.format('%d', tonumber(allowed) - take) .. ' ' .. under)
return take
`;

/**
 * KEYS[1] wait, KEYS[2] active, KEYS[3] meta, KEYS[4] marker, KEYS[5] queued counter, KEYS[6] queued-per-tenant hash.
 * ARGV[1] key base ("<prefix>:<queue>:"), ARGV[2] lock token, ARGV[3] lock ms, ARGV[4] now (epoch ms),
 * ARGV[5] instances wanted, ARGV[6] most envelopes, ARGV[7] "1" for a take sent behind a blocking read,
 * ARGV[8] whether the envelopes this take brings are the next to run in the worker (nothing it holds runs
 * before them): "0" no, "1" those the batch collecting has room for, "2" those and the first however big
 * (nothing is collecting: it starts the batch), ARGV[9] the stalls an envelope may have of its own (maxStalledCount).
 * Takes envelopes (oldest first) until it has the instances wanted: each moves to active
 * under the worker's lock, as BullMQ's moveToActive does. Returns {waiting after, id, fields, id, fields, …}
 * (fields as HGETALL gives them, before this take, with what this take decided: see below), or {-1} while
 * the queue is paused.
 *
 * Stalls an envelope owns. A worker that dies or hangs in a run loses every envelope it holds: those of
 * the run, and those taken for a later one, which BullMQ's stalled check counts a stall against too
 * (`stc`, and `defa` past the limit). So an envelope notes the take in which a run of it began (`rt`):
 * this take, with ARGV[8], for those the batch has room for, unless the take brings one that runs alone
 * (its jobs run first); else the worker marks it just before the run (MARK_ENVELOPE_RUNS, MARK_RUNNING). A take after a stall counts the stall
 * as the envelope's own (`ors`) only when the take before it had begun a run of it, sets BullMQ's count
 * to that, and keeps `defa` only past the limit: an envelope held beside another's crashing run is not
 * failed `worker_lost` for it, nor made to run its jobs one at a time. Answered among the fields:
 * `@own`, its own stalls (when any), and `@rt` when this take marked it.
 * A take stamps processedOn (and the first one ft) with ARGV[4], or the envelope's enqueue time if later.
 * A take behind a blocking read of an envelope taken before and enqueued before ARGV[4] (one the stalled
 * check put back: it did not end the wait, and the wait may have lasted seconds) also answers `@t`, Redis's
 * clock at the take (epoch ms, the platform's clock: platformNow), for the worker to stamp it with (EnvelopeQueue.waitAndFetch).
 * An envelope's instances leave the queued count the first time a worker takes it,
 * less those canceled before that; one put back by the stalled check is not counted again.
 */
export const FETCH = `${ALLOW_OOM}if redis.call('HEXISTS', KEYS[3], 'paused') == 1 then return {-1} end
local now = tonumber(ARGV[4])
local redisNow = nil
local out = {0}
local wanted, most = tonumber(ARGV[5]), tonumber(ARGV[6])
local runsNext, firstRuns, maxStalls = ARGV[8] ~= '0', ARGV[8] == '2', tonumber(ARGV[9])
-- Envelopes noted (rt) by this take: {its key, its fields}, unnoted again should one that runs alone follow.
local noted, alone = {}, false
local taken, envelopes, leaving = 0, 0, 0
local function without(h, name)
  local kept = {}
  for i = 1, #h, 2 do
    if h[i] ~= name then kept[#kept + 1] = h[i]; kept[#kept + 1] = h[i + 1] end
  end
  return kept
end
-- Counted first, so a take that empties the queue does not pop once more to find it empty.
local waiting = redis.call('LLEN', KEYS[1])
while envelopes < most and taken < wanted and waiting > 0 do
  local id = redis.call('RPOPLPUSH', KEYS[1], KEYS[2])
  if not id then waiting = 0; break end
  waiting = waiting - 1
  local jk = ARGV[1] .. id
  local h = {}
  if string.sub(id, 1, 2) ~= '0:' then h = redis.call('HGETALL', jk) end
  if #h == 0 then
    -- A BullMQ marker entry, or an envelope deleted under the queue (by hand): its inputs key, if any, goes too.
    redis.call('LREM', KEYS[2], 1, id)
    redis.call('DEL', jk .. ':in')
  else
    local f = {}
    for i = 1, #h, 2 do f[h[i]] = h[i + 1] end
    redis.call('SET', jk .. ':lock', ARGV[2], 'PX', ARGV[3])
    -- A take sent behind a blocking read (EnvelopeQueue.waitAndFetch) runs later than ARGV[4] says; then the
    -- envelope it takes is the one whose enqueue ended the wait, so its enqueue time is the closer clock
    -- (one the stalled check put back is older than the wait: the worker stamps it again, see waitAndFetch).
    local at = math.max(now, tonumber(f['timestamp']) or 0)
    if ARGV[7] == '1' and f['processedOn'] and (tonumber(f['timestamp']) or 0) < now then
      if not redisNow then
        local t = redis.call('TIME')
        redisNow = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
      end
      h[#h + 1] = '@t'
      h[#h + 1] = tostring(redisNow)
    end
    local n = tonumber(f['n']) or 0
    local takes = tonumber(f['ats']) or 0
    local own = tonumber(f['ors']) or 0
    local set = {'processedOn', at, 'ats', takes + 1}
    if f['processedOn'] then
      -- Taken before: the stalled check put it back. Its own stall only if the take before had begun a run of it.
      if f['rt'] == tostring(takes) then own = own + 1 end
      set[#set + 1] = 'ors'; set[#set + 1] = own
      set[#set + 1] = 'stc'; set[#set + 1] = own
      if own > maxStalls then
        if not f['defa'] then
          set[#set + 1] = 'defa'; set[#set + 1] = 'job stalled more than allowable limit'
          h[#h + 1] = 'defa'; h[#h + 1] = 'job stalled more than allowable limit'
        end
      elseif f['defa'] then
        redis.call('HDEL', jk, 'defa')
        h = without(h, 'defa')
      end
    else
      -- ft: the first take, which processedOn (each take's, as BullMQ keeps it) forgets when a stalled envelope is taken again.
      set[#set + 1] = 'ft'; set[#set + 1] = at
      local canceled = 0
      if f['x'] then for _ in string.gmatch(f['x'], '%S+') do canceled = canceled + 1 end end
      leaving = leaving + n - canceled
      if f['tq'] then
        -- Tenants counted at enqueue leave their counts too, less their jobs canceled before (counted then).
        local gone = {}
        if f['xt'] then for tenant in string.gmatch(f['xt'], '%S+') do gone[tenant] = (gone[tenant] or 0) + 1 end end
        for tenant, count in string.gmatch(f['tq'], '(%S+) (%S+)') do
          local c = tonumber(count) - (gone[tenant] or 0)
          if c > 0 then redis.call('HINCRBY', KEYS[6], tenant, -c) end
        end
      end
    end
    -- Runs next (and not alone, which marks each job's run itself): the batch's room holds it, or it starts the batch.
    if own > 0 then alone = true end
    local notes = runsNext and not alone and own == 0 and ((envelopes == 0 and firstRuns) or taken + n <= wanted)
    if notes then
      set[#set + 1] = 'rt'; set[#set + 1] = takes + 1
      h[#h + 1] = '@rt'; h[#h + 1] = '1'
      noted[#noted + 1] = {jk, h}
    end
    if own > 0 then h[#h + 1] = '@own'; h[#h + 1] = own end
    redis.call('HSET', jk, unpack(set))
    taken = taken + n
    envelopes = envelopes + 1
    out[#out + 1] = id
    out[#out + 1] = h
  end
end
-- One that runs alone runs its jobs as soon as it is taken, before the batch: those noted before it do not run next.
if alone then
  for _, e in ipairs(noted) do
    redis.call('HDEL', e[1], 'rt')
    local h = e[2]
    for i = #h - 1, 1, -2 do
      if h[i] == '@rt' then table.remove(h, i + 1); table.remove(h, i) end
    end
  end
end
if leaving > 0 then redis.call('DECRBY', KEYS[5], leaving) end
-- Wake the next idle worker: there is more than this one took.
if waiting > 0 and envelopes > 0 then redis.call('ZADD', KEYS[4], 0, '0') end
out[1] = waiting
return out
`;

/**
 * The most record bytes one FINISH message to a gateway carries (4 MiB): what is past it (a large
 * output, a batch of them) the gateway reads from the records, so that no message nears Redis's
 * pubsub output-buffer limit, which would disconnect the gateway's subscriber and drop the messages
 * its other requests wait for.
 */
export const MESSAGE_RECORD_BYTES = 4 * 1024 * 1024;

/**
 * How a gateway's channel ends when the gateway reads what a message names
 * without its record (JobWaiters). A gateway from before the bound took
 * every frame's bytes as a record: during a rolling upgrade (workers first),
 * its messages still carry every record.
 */
export const READS_BY_NAME_SUFFIX = '.r';

/**
 * KEYS[1] active, KEYS[2] wait, KEYS[3] job index.
 * ARGV[1] key base, ARGV[2] record key prefix ("<tagged prefix>:job:"), ARGV[3] result TTL ms,
 * then per envelope: its id, the submitting gateway's channel, the job count k, and
 * k × (job id, ended record or "" for a job not run here, "1" when its submitter waits, "1" when it has a deadline,
 * its webhook events to make: "1" when it has a job.completed webhook (the job goes on the queue's outbox in the same
 * step, see CompletedEventsOutbox), with "s" when its job.started is not yet made ("s:<id>" goes on the outbox too:
 * a worker that dies once the job has ended, its job.started still being made, does not lose it).
 * Ends the jobs (SET NX: a job canceled meanwhile keeps its canceled record and
 * this output is discarded; a job its envelope lists as canceled (`x`) is skipped
 * too, so its canceled record having expired meanwhile, a run that outlasted
 * RESULT_TTL, does not let the output in), removes the envelopes, and sends each ended record,
 * once, to every gateway waiting on it: one message per gateway for the whole call, holding at most
 * MESSAGE_RECORD_BYTES of records (the jobs past that are named without their records) for a gateway
 * whose channel says it reads them (READS_BY_NAME_SUFFIX).
 * An envelope the stalled check had put back in wait is taken out of it too: its
 * jobs have ended. Returns per job 1 when this call ended it (or the same call before it, whose
 * reply was lost: the record there is byte for byte this one), else 0.
 */
export const FINISH = `${ALLOW_OOM}${IN_SLICES}${WATCHERS}
local base, recordPrefix, ttl = ARGV[1], ARGV[2], ARGV[3]
local ended, messages = {}, {}
local function send(channel, id, record)
  local m = messages[channel]
  if not m then m = { bytes = 0, byName = string.sub(channel, -${READS_BY_NAME_SUFFIX.length}) == '${READS_BY_NAME_SUFFIX}' }; messages[channel] = m end
  -- Redis disconnects a subscriber with more unread than its pubsub output-buffer limit (32 MB by default,
  -- and 8 MB for a minute): past MESSAGE_RECORD_BYTES of records, a frame names the job alone and that
  -- gateway reads its record (JobWaiters), when it can (READS_BY_NAME_SUFFIX).
  if m.byName and m.bytes + #record > ${MESSAGE_RECORD_BYTES} then record = '' end
  m.bytes = m.bytes + #record
  m[#m + 1] = frame(id, record)
end
local i = 4
while i <= #ARGV do
  local env, submitter, k = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  local jk = base .. env
  if redis.call('LREM', KEYS[1], 1, env) == 0 then redis.call('LREM', KEYS[2], 1, env) end
  local h = redis.call('HMGET', jk, 'w', 'x')
  local watchers = watchersOf(h[1])
  local canceled = {}
  if h[2] then for id in string.gmatch(h[2], '%S+') do canceled[id] = true end end
  redis.call('DEL', jk, jk .. ':lock', jk .. ':in')
  local ids = {}
  for j = 1, k do
    local id, record, waits, deadline, hook = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
    i = i + 5
    ids[#ids + 1] = id
    if deadline == '1' then redis.call('ZREM', base .. 'deadlines', id) end
    local ok = 0
    if record ~= '' and not canceled[id] and redis.call('SET', recordPrefix .. id, record, 'PX', ttl, 'NX') then
      ok = 1
      if string.find(hook, 's', 1, true) then redis.call('LPUSH', base .. 'outbox', 's:' .. id) end
      if string.find(hook, '1', 1, true) then redis.call('LPUSH', base .. 'outbox', id) end
      local chans = watchers[id] or {}
      if waits == '1' and submitter ~= '' then chans[submitter] = true end
      for channel in pairs(chans) do send(channel, id, record) end
    elseif record ~= '' and not canceled[id] and redis.call('GET', recordPrefix .. id) == record then
      -- This very FINISH ran before, its reply lost with its connection (ioredis sent it again): the
      -- record is this run's, so the job ended here; what went with it (outbox, messages) went then.
      ok = 1
    end
    ended[#ended + 1] = ok
  end
  inSlices('HDEL', KEYS[3], ids)
end
for channel, parts in pairs(messages) do redis.call('PUBLISH', channel, table.concat(parts)) end
return ended
`;

/**
 * KEYS[1] the job's record, KEYS[2] its tag's job index.
 * ARGV[1] tagged prefix, ARGV[2] job id, ARGV[3] a gateway channel to tell when it ends ("" for none).
 * Returns {1, record} for an ended job; {2, envelope data, processedOn or "", index value, ft or ""} for
 * one not ended (registering the channel, when given, on its envelope); {0} when there is neither.
 * allow-oom: a long poll's watcher (a few bytes on the envelope) is registered even when Redis is
 * full, where submits are refused: reads keep working, long polls included.
 */
export const READ = `${ALLOW_OOM}
local record = redis.call('GET', KEYS[1])
if record then return {1, record} end
local where = redis.call('HGET', KEYS[2], ARGV[2])
if not where then return {0} end
local jk = ARGV[1] .. ':' .. where
local h = redis.call('HMGET', jk, 'data', 'processedOn', 'w', 'ft')
if not h[1] then return {0} end
if ARGV[3] ~= '' then
  local entry = ARGV[3] .. ' ' .. ARGV[2] .. '\\n'
  if not h[3] or not string.find(h[3], entry, 1, true) then redis.call('HSET', jk, 'w', (h[3] or '') .. entry) end
end
return {2, h[1], h[2] or '', where, h[4] or ''}
`;

/**
 * KEYS[1] the job's record, KEYS[2] its tag's job index.
 * ARGV[1] tagged prefix, ARGV[2] job id, ARGV[3] index value as READ gave it,
 * ARGV[4] the canceled record, ARGV[5] TTL ms, ARGV[6] the submitter's channel when its request waits (""),
 * ARGV[7] "1" to cancel only a job still queued (a deadline: a running job finishes), ARGV[8] the job's tenant,
 * ARGV[9] "1" when the job has a job.completed webhook (it goes on the queue's outbox in the same step),
 * ARGV[10] with ARGV[7], a time (epoch ms) or "": a job whose envelope was first taken (ft) at or after it
 * counts as queued too (it was still queued at its deadline, and its worker does not run it).
 * Ends the job as canceled unless it has ended meanwhile: {1}; {0, the record it ended with}; or {2} when
 * ARGV[7] asked for a queued job and a worker has taken it. A job no worker has taken yet leaves the
 * queued counts and is skipped when taken; one that is running has its output discarded (FINISH's SET NX loses).
 */
export const CANCEL_COMMIT = `${WATCHERS}
local jk = ARGV[1] .. ':' .. ARGV[3]
local h = redis.call('HMGET', jk, 'n', 'processedOn', 'w', 'x', 'tq', 'xt', 'ft')
if ARGV[7] == '1' and h[2] and not (ARGV[10] ~= '' and h[7] and tonumber(h[7]) >= tonumber(ARGV[10])) then return {2} end
if not redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5], 'NX') then return {0, redis.call('GET', KEYS[1])} end
redis.call('HDEL', KEYS[2], ARGV[2])
local queue = string.match(ARGV[3], '^(.*):[^:]*$')
local base = ARGV[1] .. ':' .. queue .. ':'
redis.call('ZREM', base .. 'deadlines', ARGV[2])
if ARGV[9] == '1' then redis.call('LPUSH', base .. 'outbox', ARGV[2]) end
local part = frame(ARGV[2], ARGV[4])
local told = {}
if h[1] then
  redis.call('HSET', jk, 'x', (h[4] or '') .. ARGV[2] .. ' ')
  if not h[2] then
    redis.call('DECRBY', base .. 'queued', 1)
    if h[5] then
      redis.call('HINCRBY', base .. 'tenants', ARGV[8], -1)
      redis.call('HSET', jk, 'xt', (h[6] or '') .. ARGV[8] .. ' ')
    end
  end
  for channel in pairs(watchersOf(h[3])[ARGV[2]] or {}) do
    told[channel] = true
    redis.call('PUBLISH', channel, part)
  end
end
if ARGV[6] ~= '' and not told[ARGV[6]] then redis.call('PUBLISH', ARGV[6], part) end
return {1}
`;

/**
 * KEYS[1] idempotency key. ARGV[1] job id, ARGV[2] ttl_ms, ARGV[3] now (epoch ms). Claims the key for
 * this job unless an earlier request holds it. The key holds "<job id> <claimed at>"; returns what it
 * holds (a key claimed before the time was kept holds the id alone).
 */
export const CLAIM_IDEMPOTENCY_KEY = `
local claim = ARGV[1] .. ' ' .. ARGV[3]
if redis.call('SET', KEYS[1], claim, 'NX', 'PX', ARGV[2]) then return claim end
return redis.call('GET', KEYS[1])
`;

/** KEYS[1] idempotency key. ARGV job id. Lets go of a key claimed for a job that was never enqueued. */
export const RELEASE_IDEMPOTENCY_KEY = `
local held = redis.call('GET', KEYS[1])
if held and (held == ARGV[1] or string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. ' ') then return redis.call('DEL', KEYS[1]) end
return 0
`;

/**
 * KEYS[1] idempotency key. ARGV[1] the id of a job that has ended, ARGV[2] its record's ttl_ms. The key,
 * while that job holds it, expires no later than the record (PEXPIRE … LT: never later than it would).
 */
export const SHORTEN_IDEMPOTENCY_KEY = `
local held = redis.call('GET', KEYS[1])
if held and (held == ARGV[1] or string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. ' ') then return redis.call('PEXPIRE', KEYS[1], ARGV[2], 'LT') end
return 0
`;

/**
 * KEYS[1] idempotency key. ARGV[1] the claim it holds as read, ARGV[2] the new job id, ARGV[3] ttl_ms,
 * ARGV[4] now. Takes over a key whose job is gone, unless another request took it over first: 1 or 0.
 */
export const TAKE_OVER_IDEMPOTENCY_KEY = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. ARGV[4], 'PX', ARGV[3])
return 1
`;

/**
 * KEYS[1] a BullMQ job's hash (an envelope, a bulk chunk), KEYS[2] its lock. ARGV[1] the lock token of
 * the take, ARGV[2] what runs now, or "" once it has run. Notes (`run`) what of a job taken again after a
 * stall is running on its own, while the take still holds the job: should that worker die or hang, the
 * next take knows which input did it. Allowed on a full Redis (a few bytes; cleared after the run), as
 * FINISH is: a crashing input must not go unnoted because Redis is at maxmemory. ARGV[3], for an
 * envelope: the take's number, noted (`rt`, see FETCH) for as long as the job runs, so that a stall
 * in its run is the envelope's own and one between its jobs' runs is not. 1 when done, else 0.
 */
export const MARK_RUNNING = `${ALLOW_OOM}if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  if ARGV[3] then redis.call('HDEL', KEYS[1], 'run', 'rt') else redis.call('HDEL', KEYS[1], 'run') end
elseif ARGV[3] then redis.call('HSET', KEYS[1], 'run', ARGV[2], 'rt', ARGV[3])
else redis.call('HSET', KEYS[1], 'run', ARGV[2]) end
return 1
`;

/**
 * KEYS: per envelope, its hash and its lock; ARGV: per envelope, the lock token of its take and the
 * take's number, or "" to clear. Notes on each envelope its take still holds that a run of it begins in
 * that take (`rt`, see FETCH), just before the run: one taken while another of the worker's runs was
 * under way, or waiting for one, whose take could not note it. Cleared before another's run in the
 * worker's process starts, while the envelope waits for its own (RunMark in packages/models): a take
 * may have noted it early. Allowed on a full Redis (a few bytes), as MARK_RUNNING is. Returns how many
 * it wrote.
 */
export const MARK_ENVELOPE_RUNS = `${ALLOW_OOM}local noted = 0
for i = 1, #KEYS, 2 do
  if redis.call('GET', KEYS[i + 1]) == ARGV[i] then
    if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[i], 'rt') else redis.call('HSET', KEYS[i], 'rt', ARGV[i + 1]) end
    noted = noted + 1
  end
end
return noted
`;

/**
 * KEYS[1] a bulk chunk's BullMQ job hash, KEYS[2] its lock. ARGV[1] the lock token of the take, ARGV[2] the
 * attempt (BullMQ's attemptsMade), ARGV[3] the stalls allowed (maxStalledCount). Marks (`rb`) that a run
 * of the chunk begins in this attempt, while the take still holds it, and keeps the count of stalls of
 * its own runs (`ors`). A bulk worker holds a second chunk, fetched ahead, while it runs one: when a row
 * of the one running kills the process, BullMQ's stalled check counts a stall against both (`stc`, and
 * `defa` past the limit). So BullMQ's count is set to the chunk's own: a take that finds a run of it
 * begun in this attempt follows a stall of that run (one more of its own); one that does not (the first
 * run of an attempt) follows only neighbours' stalls, and a row noted as running (`run`) in an earlier
 * attempt was dealt with there. Allowed on a full Redis (a few bytes), as MARK_RUNNING is. Returns the
 * chunk's own stalls, or -1 when the take no longer holds it (nothing written).
 */
export const MARK_RUN_BEGAN = `${ALLOW_OOM}if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local marks = redis.call('HMGET', KEYS[1], 'rb', 'ors')
local own = tonumber(marks[2]) or 0
if marks[1] == ARGV[2] then
  own = own + 1
  redis.call('HSET', KEYS[1], 'ors', own, 'stc', own)
else
  redis.call('HSET', KEYS[1], 'rb', ARGV[2], 'stc', own)
  redis.call('HDEL', KEYS[1], 'run')
end
if own <= tonumber(ARGV[3]) then redis.call('HDEL', KEYS[1], 'defa')
elseif redis.call('HEXISTS', KEYS[1], 'defa') == 0 then redis.call('HSET', KEYS[1], 'defa', 'job stalled more than allowable limit') end
return own
`;

/**
 * KEYS[1] a bulk chunk's BullMQ job hash, KEYS[2] its lock. ARGV[1] the lock token of the take, ARGV[2] the
 * attempt, or "" to clear. Sets (or clears) the chunk's note that its run is under way (`rb`, see
 * MARK_RUN_BEGAN) while the take holds it: cleared before another's run in its worker's process starts,
 * set again before the chunk's next slice (RunMark in packages/models). Allowed on a full Redis, as
 * MARK_RUN_BEGAN is. 1 when done, else 0.
 */
export const MARK_CHUNK_RUN = `${ALLOW_OOM}if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], 'rb') else redis.call('HSET', KEYS[1], 'rb', ARGV[2]) end
return 1
`;

/**
 * KEYS[1] an envelope's hash, KEYS[2] its lock. ARGV[1] the lock token of the take, ARGV[2] the stamp (epoch ms).
 * Stamps the take again (`processedOn`) while the take still holds the envelope: one ended or taken back
 * meanwhile is left as it is (a hash FINISH deleted is not written again). 1 when stamped, else 0.
 */
export const RESTAMP_TAKE = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'processedOn', ARGV[2])
return 1
`;

/**
 * KEYS[1] an envelope. Marks (`ws`) that the `job.started` events of its jobs are created and queued,
 * so a later take (after a stall) does not make them again: their log entries may have expired by then
 * (they live RESULT_TTL from delivery), and would be made and sent anew. An envelope already gone is
 * left gone: 1 when marked, else 0.
 */
export const MARK_STARTED_SENT = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'ws', '1')
return 1
`;

/**
 * KEYS[1] wait. ARGV[1] the queue's key base, ARGV[2] envelopes to look at, at most. Returns
 * {the `timestamp` (epoch ms) of the oldest envelope in `wait` with a job not canceled, or 0 when none
 * of those looked at has one; when every one looked at was canceled and more were left unlooked at,
 * the last one's timestamp (a waiting envelope, if any, is at least that old), else 0}. An envelope
 * whose jobs were all canceled while queued stays there until a worker takes it, and is not waiting.
 */
export const OLDEST_WAITING = `
local last = 0
local len = redis.call('LLEN', KEYS[1])
local most = tonumber(ARGV[2])
for i = 1, math.min(len, most) do
  local id = redis.call('LINDEX', KEYS[1], -i)
  local h = redis.call('HMGET', ARGV[1] .. id, 'n', 'x', 'timestamp')
  if h[1] and h[3] then
    local _, canceled = string.gsub(h[2] or '', ' ', '')
    last = tonumber(h[3])
    if canceled < tonumber(h[1]) then return {last, 0} end
  end
end
if len <= most then return {0, 0} end
return {0, last}
`;

/**
 * KEYS[1] wait, KEYS[2] queued counter, KEYS[3] queued-per-tenant hash. Every instance the counts hold
 * is in an envelope in `wait` (ENQUEUE pushes and counts in one step; the first take and a queued
 * cancel uncount), so an empty `wait` means counts of 0. Counts above that are envelopes removed by
 * hand (an operator deleting queue entries), which would hold MAX_QUEUE_DEPTH and TENANT_MAX_QUEUED
 * against jobs that no longer exist. Returns the instances the counter held that were let go.
 */
export const RECONCILE_QUEUED = `
if redis.call('LLEN', KEYS[1]) > 0 then return 0 end
local held = tonumber(redis.call('GET', KEYS[2]) or '0')
if held ~= 0 then redis.call('SET', KEYS[2], 0) end
redis.call('DEL', KEYS[3])
return held
`;

/**
 * KEYS[1] active. ARGV[1] key base, ARGV[2] lock token. The envelopes in `active` locked with this
 * token, as FETCH answers them ({0, id, fields, id, fields, …}; the fields as they are now). For a
 * take whose reply was lost with its connection: ioredis sends FETCH again after reconnecting, and
 * that finds the envelopes the first run took gone from `wait`. Only then, so its scan of `active`
 * costs nothing on the way of every take.
 */
export const RECOVER_TAKE = `
local out = {0}
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local jk = ARGV[1] .. id
  if redis.call('GET', jk .. ':lock') == ARGV[2] then
    local h = redis.call('HGETALL', jk)
    if #h > 0 then
      out[#out + 1] = id
      out[#out + 1] = h
    end
  end
end
return out
`;
