"""rq's key names, and the Lua scripts that read and write rq's data model in Redis.

Why Lua: taking a job (pop it, mark it started, lease it in rq's StartedJobRegistry, record
the execution), recording its outcome (only while this execution still holds the lease) and
reaping (queue again or fail the jobs whose lease expired) each touch several keys, and each
must happen whole and must not race another host doing the same. A script runs atomically in
Redis, so two hosts never take the same job nor requeue one twice, and each step costs one
round trip. The scripts spell the ``rq:`` and ``qoper8:`` key prefixes below literally; the
two must agree. Plain strings here: the consumer and the client register them.
"""

from __future__ import annotations

from typing import Final

from .jobs import RESULT_FAILED, RESULTS_MAXLEN
from .stream_scripts import STREAM_MAXLEN

# ---------------------------------------------------------------- keys
RQ: Final = "rq"
QUEUES_KEY: Final = f"{RQ}:queues"
QUEUE_PREFIX: Final = f"{RQ}:queue:"
JOB_PREFIX: Final = f"{RQ}:job:"
WIP_PREFIX: Final = f"{RQ}:wip:"
EXECUTION_PREFIX: Final = f"{RQ}:execution:"
EXECUTIONS_PREFIX: Final = f"{RQ}:executions:"
FINISHED_PREFIX: Final = f"{RQ}:finished:"
FAILED_PREFIX: Final = f"{RQ}:failed:"
RESULTS_PREFIX: Final = f"{RQ}:results:"
WORKERS_KEY: Final = f"{RQ}:workers"
WORKER_PREFIX: Final = f"{RQ}:worker:"
CLAIM_PREFIX: Final = "qoper8:claim:"
CONSUMERS_PREFIX: Final = "qoper8:consumers:"
REPLY_PREFIX: Final = "qoper8:reply:"
# A client's reply list outlives a dead client by this long, then Redis drops it.
REPLY_TTL: Final = 300


# ---------------------------------------------------------------- Lua scripts
# Take one job: first anything this consumer claimed with BLMOVE, else the queue head. Skips
# (and lists in ``skipped``, as id/reason pairs, for the consumer to log) ids whose hash is
# gone or is not a hash, or whose status says it is not waiting (finished, a duplicate id of
# a running job...). A hash without data is taken all the same: the consumer fails it with
# the reason, where rq's tools look. Leases the job in rq's StartedJobRegistry, as rq's
# prepare_execution does.
# Arguments (t = the 7 take arguments): now, lease expiry, worker name, execution id, max
# retries, now (rq text), execution ttl. Returns the job's fields, or false: id, data,
# timeout, reply key, deadline, result ttl, failure ttl, qoper8_stream, qoper8_trace (the
# caller's OpenTelemetry context, false without one); the consumer appends the execution id.
TAKE_FUNCTION: Final = """
local skipped = {}
local function take(queue, wip, claim, t)
  local id = redis.call('LPOP', claim)
  if not id then id = redis.call('LPOP', queue) end
  while id do
    local jk = 'rq:job:' .. id
    -- pcall: a key of the wrong type (written by anyone) is skipped, not an error
    local f = redis.pcall('HMGET', jk, 'data', 'status', 'timeout', 'retries_left',
                          'qoper8_reply', 'qoper8_deadline', 'result_ttl', 'failure_ttl',
                          'qoper8_stream', 'qoper8_trace')
    local why = false
    if f.err then
      f, why = {}, 'not a hash'
    elseif not f[1] and redis.call('EXISTS', jk) == 0 then
      why = 'no job hash (deleted, expired, or withdrawn by its caller)'
    end
    local st = f[2]
    if not why and not (not st or st == 'queued' or st == 'created' or st == '') then
      why = 'status ' .. st
    end
    if why then
      skipped[#skipped + 1] = id
      skipped[#skipped + 1] = why
    else
      local member = id .. ':' .. t[4]
      redis.call('HSET', jk, 'status', 'started', 'started_at', t[6],
                 'last_heartbeat', t[6], 'worker_name', t[3], 'ended_at', '')
      if not f[4] then redis.call('HSET', jk, 'retries_left', t[5]) end
      redis.call('PERSIST', jk)
      redis.call('ZADD', wip, t[2], member)
      local ek = 'rq:execution:' .. member
      redis.call('HSET', ek, 'id', t[4], 'job_id', id, 'created_at', t[1],
                 'last_heartbeat', t[1], 'worker_name', t[3])
      redis.call('EXPIRE', ek, t[7])
      redis.call('ZADD', 'rq:executions:' .. id, t[2] + 60, t[4])
      redis.call('EXPIRE', 'rq:executions:' .. id, t[7])
      return {id, f[1] or '', f[3] or false, f[5] or false, f[6] or false, f[7] or false,
              f[8] or false, f[9] or false, f[10] or false}
    end
    id = redis.call('LPOP', queue)
  end
  return false
end
"""

# KEYS: queue, wip, claim. ARGV: the 7 take arguments. Returns {job or false, skipped}.
TAKE_LUA: Final = TAKE_FUNCTION + "return {take(KEYS[1], KEYS[2], KEYS[3], ARGV), skipped}\n"

# Record an outcome, only if this execution still holds its lease (otherwise the job was
# queued again and another execution owns it; this one's outcome is dropped). If the job
# hash is gone altogether (Redis restarted empty), the waiting client still gets its reply.
# Then, if asked, take the next job for the child that just became idle: under load a job
# costs this one round trip instead of two. Arguments travel as one JSON object (packing
# thirty separate arguments cost the master more than the rest of the job).
# KEYS: wip, queue, claim. ARGV[1]: {id, m: member, x: execution id, s: status, e: ended_at,
# reg: registry key, sc: registry score, ttl (-1 persist, 0 delete), rk: reply key, rp: reply,
# jf: job field/value pairs, sf: stream field/value pairs, w: rq worker key, t: the 7 take
# arguments or absent}.
# Returns {1 if recorded else 0, the next job or false, skipped (see take)}.
FINISH_LUA: Final = (
    TAKE_FUNCTION
    + """
local a = cjson.decode(ARGV[1])
local jk = 'rq:job:' .. a.id
local function finish()
  if redis.call('ZREM', KEYS[1], a.m) == 0 then
    if a.rk ~= '' and redis.call('EXISTS', jk) == 0 then
      redis.call('RPUSH', a.rk, a.rp)
      redis.call('EXPIRE', a.rk, %(reply_ttl)d)
    end
    return 0
  end
  local fields = {'status', a.s, 'ended_at', a.e}
  for _, v in ipairs(a.jf) do fields[#fields + 1] = v end
  redis.pcall('HSET', jk, unpack(fields))
  local rk = 'rq:results:' .. a.id
  if a.ttl ~= '0' then
    redis.call('ZADD', a.reg, a.sc, a.id)
    redis.call('XADD', rk, 'MAXLEN', '~', %(maxlen)d, '*', unpack(a.sf))
  end
  if a.ttl == '0' then
    redis.call('DEL', jk)
  elseif a.ttl == '-1' then
    redis.call('PERSIST', jk)
  else
    redis.call('EXPIRE', jk, a.ttl)
    redis.call('EXPIRE', rk, a.ttl)
  end
  redis.call('DEL', 'rq:execution:' .. a.m)
  redis.call('ZREM', 'rq:executions:' .. a.id, a.x)
  if a.rk ~= '' then
    redis.call('RPUSH', a.rk, a.rp)
    redis.call('EXPIRE', a.rk, %(reply_ttl)d)
  end
  if redis.call('EXISTS', a.w) == 1 then
    local counter = 'failed_job_count'
    if a.s == 'finished' then counter = 'successful_job_count' end
    redis.call('HINCRBY', a.w, counter, 1)
  end
  return 1
end
local written = finish()
local nxt = false
if a.t then nxt = take(KEYS[2], KEYS[1], KEYS[3], a.t) end
return {written, nxt, skipped}
""".replace("%(reply_ttl)d", str(REPLY_TTL)).replace("%(maxlen)d", str(RESULTS_MAXLEN))
)

# Renew this consumer's registration (qoper8's, and rq's worker hash so that `rq info` lists
# the host) and the leases of its running jobs. Returns {members whose lease is already gone
# (reaped), so the consumer can log that their outcome will be dropped; members whose caller
# cancelled them with kill_on_cancel (see WITHDRAW_LUA), for the consumer to stop}.
# KEYS: wip, consumers, rq:workers, rq:workers:{queue}, rq:worker:{name}. ARGV: lease expiry,
# consumer name, now (rq text), state, worker ttl, birth (rq text), hostname, pid, queue name,
# registration expiry, members...
HEARTBEAT_LUA: Final = """
redis.call('ZADD', KEYS[2], ARGV[10], ARGV[2])
redis.call('HSET', KEYS[5], 'name', ARGV[2], 'last_heartbeat', ARGV[3], 'state', ARGV[4],
           'birth', ARGV[6], 'hostname', ARGV[7], 'pid', ARGV[8], 'queues', ARGV[9])
redis.call('EXPIRE', KEYS[5], ARGV[5])
redis.call('SADD', KEYS[3], KEYS[5])
redis.call('SADD', KEYS[4], KEYS[5])
local lost, cancelled = {}, {}
for i = 11, #ARGV do
  local m = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], m) then
    redis.call('ZADD', KEYS[1], ARGV[1], m)
    local id = string.match(m, '^(.*):[^:]*$') or m
    redis.pcall('HSET', 'rq:job:' .. id, 'last_heartbeat', ARGV[3])
    if redis.pcall('HGET', 'rq:job:' .. id, 'qoper8_cancel') == '1' then
      cancelled[#cancelled + 1] = m
    end
  else
    lost[#lost + 1] = m
  end
end
return {lost, cancelled}
"""

# Any host runs this. (1) A consumer whose registration expired died (or froze): its claimed
# ids go back to the queue front, and it leaves rq's worker registry, as rq's own
# clean_worker_registry does, so that `rq info` stops listing it. (2) A lease that expired
# belongs to a dead or cut-off host: the job is queued again while retries_left > 0
# (decremented, as rq's own cleanup does), else it fails with the reason and its waiting
# client is told.
# KEYS: wip, queue, failed, consumers. ARGV: now, now (rq text), default failure ttl,
# reason text, reason (rq exc_string form), error JSON prefix, error JSON suffix, batch,
# the reaping consumer's name.
# Returns {claims returned, ids queued again, ids failed, dead consumers}.
REAP_LUA: Final = (
    """
local now = tonumber(ARGV[1])
local expired_consumers = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 100)
local returned, dead = 0, {}
for _, c in ipairs(expired_consumers) do
  -- the reaper's own registration lapsing means only that its loop was late: it is alive
  if c ~= ARGV[9] then dead[#dead + 1] = c end
end
for _, c in ipairs(dead) do
  local ck = 'qoper8:claim:' .. string.sub(KEYS[2], 10) .. ':' .. c
  while redis.call('LMOVE', ck, KEYS[2], 'RIGHT', 'LEFT') do returned = returned + 1 end
  redis.call('ZREM', KEYS[4], c)
  local wk = 'rq:worker:' .. c
  redis.call('DEL', wk)
  redis.call('SREM', 'rq:workers', wk)
  redis.call('SREM', 'rq:workers:' .. string.sub(KEYS[2], 10), wk)
end
local requeued, failed = {}, {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[8]))
for _, m in ipairs(expired) do
  redis.call('ZREM', KEYS[1], m)
  local id = string.match(m, '^(.*):[^:]*$') or m
  local ex = string.sub(m, string.len(id) + 2)
  redis.call('DEL', 'rq:execution:' .. m)
  redis.call('ZREM', 'rq:executions:' .. id, ex)
  local jk = 'rq:job:' .. id
  local f = redis.pcall('HMGET', jk, 'status', 'retries_left', 'qoper8_reply', 'failure_ttl')
  if f.err then f = {} end
  local sk = 'qoper8:msgs:' .. id
  if f[1] == 'started' and redis.call('EXISTS', sk) == 1 then
    -- its stream's reader learns that this execution's messages end here (stream_scripts)
    redis.call('XADD', sk, 'MAXLEN', '~', %(stream_maxlen)d, '*', 'l', ex, 'n', '0')
  end
  if f[1] == 'started' then
    local left = tonumber(f[2] or '0') or 0
    if left > 0 then
      redis.call('HSET', jk, 'status', 'queued', 'retries_left', left - 1, 'started_at', '')
      redis.call('RPUSH', KEYS[2], id)
      requeued[#requeued + 1] = id
    else
      local ttl = tonumber(f[4] or '') or tonumber(ARGV[3])
      local err = ARGV[6] .. id .. ARGV[7]
      redis.call('HSET', jk, 'status', 'failed', 'ended_at', ARGV[2], 'exc_info', ARGV[4],
                 'qoper8_error', err)
      if ttl >= 0 then
        redis.call('ZADD', KEYS[3], now + ttl, id)
        redis.call('EXPIRE', jk, ttl)
      else
        redis.call('ZADD', KEYS[3], '+inf', id)
      end
      redis.call('XADD', 'rq:results:' .. id, 'MAXLEN', '~', %(maxlen)d, '*', 'type', '%(failed)d',
                 'worker_name', '', 'exc_string', ARGV[5])
      if f[3] and string.sub(f[3], 1, 13) == 'qoper8:reply:' then
        redis.call('RPUSH', f[3], '{"id":"' .. id .. '","error":' .. err .. '}')
        redis.call('EXPIRE', f[3], %(reply_ttl)d)
      end
      failed[#failed + 1] = id
    end
  end
end
return {returned, requeued, failed, dead}
""".replace("%(reply_ttl)d", str(REPLY_TTL))
    .replace("%(maxlen)d", str(RESULTS_MAXLEN))
    .replace("%(failed)d", str(RESULT_FAILED))
    .replace("%(stream_maxlen)d", str(STREAM_MAXLEN))
)

# Hand running and claimed jobs back: they go to the queue front without using up a retry
# nor leaving an execution behind, because nothing went wrong with them. On the final stop,
# also unregister the consumer.
# KEYS: wip, queue, claim, consumers, rq:workers, rq:workers:{queue}, rq:worker:{name}.
# ARGV: consumer name, final ('1' or '0'), members...
HANDBACK_LUA: Final = """
local n = 0
for i = 3, #ARGV do
  local m = ARGV[i]
  if redis.call('ZREM', KEYS[1], m) == 1 then
    local id = string.match(m, '^(.*):[^:]*$') or m
    redis.pcall('HSET', 'rq:job:' .. id, 'status', 'queued', 'started_at', '',
                'worker_name', '', 'last_heartbeat', '')
    redis.call('DEL', 'rq:execution:' .. m)
    redis.call('ZREM', 'rq:executions:' .. id, string.sub(m, string.len(id) + 2))
    redis.call('LPUSH', KEYS[2], id)
    n = n + 1
  end
end
while redis.call('LMOVE', KEYS[3], KEYS[2], 'RIGHT', 'LEFT') do n = n + 1 end
if ARGV[2] == '1' then
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('DEL', KEYS[7])
  redis.call('SREM', KEYS[5], KEYS[7])
  redis.call('SREM', KEYS[6], KEYS[7])
end
return n
"""

# Enqueue a job the way rq's Queue._enqueue_job does, atomically.
# KEYS: job, queue, queues. ARGV: id, field/value pairs...
ENQUEUE_LUA: Final = """
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], KEYS[2])
return 1
"""

# Withdraw a job whose caller cancelled its submit. If no host has taken it, drop it from
# the queue and delete its hash, so it never runs (an id already BLMOVEd into a host's claim
# list is then skipped by the take). If it started and the caller asked (kill_on_cancel),
# mark it: its host's next heartbeat sees the mark, kills the child and records it stopped.
# KEYS: job, queue. ARGV: id, '1' to stop a started job. Returns 1 if withdrawn, 2 if
# marked, else 0.
WITHDRAW_LUA: Final = """
local st = redis.pcall('HGET', KEYS[1], 'status')
if st == 'queued' then
  redis.call('LREM', KEYS[2], 0, ARGV[1])
  redis.call('DEL', KEYS[1])
  return 1
end
if st == 'started' and ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'qoper8_cancel', '1')
  return 2
end
return 0
"""
