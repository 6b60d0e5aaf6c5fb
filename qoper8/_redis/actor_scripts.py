"""Named actors across hosts: their Redis keys and the Lua scripts that keep the registry.

Each step that touches an actor's record, its calls and its waiters (get-or-create, queueing
a call, taking the next one, recording an outcome, claiming an actor whose lease lapsed,
destroying one) must happen whole, or two hosts could both hold one actor, or a call could be
lost between its list and its host. A script runs atomically, in one round trip. Plain
strings here (no redis import): ``actor_client`` and ``actor_host`` register them.

Keys (``{q}`` is the rq queue the hosts serve: actors live with the worker module that
declares their type; ``{name}`` is the actor's name)::

    qoper8:actors:{q}                zset    every actor's name, scored by its host's lease
                                             expiry: 0 waits for a host (new, or handed
                                             back), a past score lapsed (its host died),
                                             +inf is unavailable (never claimed again)
    qoper8:actor:{q}:{name}          hash    type, args (JSON), max_restarts, restarts,
                                             state, holder (host and placement: who may
                                             serve it), host, child, pid, created, calls,
                                             running (the call in flight), snapshot (JSON
                                             state after its last completed call), error,
                                             woken, cancel, placements
    qoper8:actor-calls:{q}:{name}    list    its queued calls (JSON), in arrival order
    qoper8:actor-starting:{q}:{name} list    creators waiting for its first start
    qoper8:actor-named:{q}:{name}    list    ``get(name, wait=)`` callers waiting for it
    qoper8:actor-placing:{q}         list    hints for hosts with a free actor slot
    qoper8:actor-wake:{q}:{host}     list    hints for a host: this actor has a call
    qoper8:actor-events:{q}:{name}   channel its events (pub/sub), and {"end": ...}

Replies (outcomes, waiters' answers) go to the caller's ``qoper8:reply:{client}`` list, as
jobs' outcomes do; a reply key that is not one is never written to.
"""

from __future__ import annotations

from typing import Final

from .scripts import REPLY_PREFIX, REPLY_TTL

REGISTRY_PREFIX: Final = "qoper8:actors:"
RECORD_PREFIX: Final = "qoper8:actor:"
CALLS_PREFIX: Final = "qoper8:actor-calls:"
STARTING_PREFIX: Final = "qoper8:actor-starting:"
NAMED_PREFIX: Final = "qoper8:actor-named:"
PLACING_PREFIX: Final = "qoper8:actor-placing:"
WAKE_PREFIX: Final = "qoper8:actor-wake:"
EVENTS_PREFIX: Final = "qoper8:actor-events:"
# Placing hints kept at most: a hint only says "look at the registry", which hosts also do
# at each heartbeat; more would only grow a list nobody reads when no host has a slot.
MAX_PLACING_HINTS: Final = 1000

# Replies to the callers named by calls and waiters (JSON with "id" and "rk"); ``body`` is
# ',"result":null' or ',"error":{...}'. Garbage and foreign reply keys are skipped.
_PRELUDE: Final = (
    """
local function reply_to(raw, body)
  local ok, c = pcall(cjson.decode, raw)
  if not ok or type(c) ~= 'table' then return end
  local rk, id = c.rk, c.id
  if type(rk) ~= 'string' or string.sub(rk, 1, %(n)d) ~= '%(prefix)s' then return end
  if type(id) ~= 'string' then return end
  redis.call('RPUSH', rk, '{"id":' .. cjson.encode(id) .. body .. '}')
  redis.call('EXPIRE', rk, %(ttl)d)
end
local function reply_all(key, body)
  for _, raw in ipairs(redis.call('LRANGE', key, 0, -1)) do reply_to(raw, body) end
  redis.call('DEL', key)
end
local function error_json(kind, message, extra)
  return ',"error":{"type":"' .. kind .. '","message":' .. cjson.encode(message) .. extra .. '}'
end
""".replace("%(n)d", str(len(REPLY_PREFIX)))
    .replace("%(prefix)s", REPLY_PREFIX)
    .replace("%(ttl)d", str(REPLY_TTL))
)

# Get-or-create, one atomic step. KEYS: record, registry, starting, named, placing.
# ARGV: name, type, args, max_restarts, created, if_exists, waiter JSON.
# Returns {0, type} the name is taken (if_exists "error"); {1} it exists and has started;
# {2} it exists and is starting (the waiter is told when it has); {3} created (likewise).
CREATE_LUA: Final = (
    _PRELUDE
    + """
local st = redis.call('HGET', KEYS[1], 'state')
if st then
  if ARGV[6] ~= 'get' then return {0, redis.call('HGET', KEYS[1], 'type')} end
  if st == 'starting' then
    redis.call('RPUSH', KEYS[3], ARGV[7])
    return {2}
  end
  return {1}
end
redis.call('HSET', KEYS[1], 'type', ARGV[2], 'args', ARGV[3], 'max_restarts', ARGV[4],
           'restarts', 0, 'state', 'starting', 'created', ARGV[5], 'calls', 0,
           'holder', '', 'host', '')
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[7])
redis.call('RPUSH', KEYS[5], ARGV[1])
redis.call('LTRIM', KEYS[5], -%(hints)d, -1)
reply_all(KEYS[4], ',"result":null')
return {3}
""".replace("%(hints)d", str(MAX_PLACING_HINTS))
)

# KEYS: record, named. ARGV: waiter JSON or '', seconds it waits.
# Returns 1 if the actor exists, else 0 (and the waiter is told when it is created).
GET_LUA: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
if ARGV[1] ~= '' then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[2], math.ceil(tonumber(ARGV[2])) + 60)
end
return 0
"""

# Queue a call; wake the holding host if the actor has no call in flight (else the host's
# finish takes this one) and no wake is pending. KEYS: record, calls. ARGV: call JSON,
# wake key prefix, name. Returns {0} no such actor, {1, error} unavailable, {2} queued.
CALL_LUA: Final = """
local f = redis.call('HMGET', KEYS[1], 'state', 'host', 'error', 'running')
if not f[1] then return {0} end
if f[1] == 'unavailable' then return {1, f[3] or false} end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'calls', 1)
if f[2] and f[2] ~= '' and not f[4] and redis.call('HSETNX', KEYS[1], 'woken', 1) == 1 then
  local wk = ARGV[2] .. f[2]
  redis.call('RPUSH', wk, ARGV[3])
  redis.call('EXPIRE', wk, %(ttl)d)
end
return {2}
""".replace("%(ttl)d", str(REPLY_TTL))

# A cancelled or timed-out call: drop it if still queued, else (kill_on_cancel) ask its host
# to stop it. KEYS: calls, record. ARGV: call JSON, '1' to stop a running call.
# Returns 1 withdrawn, 2 its host is asked to stop it, 0 neither.
WITHDRAW_LUA: Final = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then return 1 end
if ARGV[2] == '1' and redis.call('HGET', KEYS[2], 'running') == ARGV[1] then
  local ok, c = pcall(cjson.decode, ARGV[1])
  if ok and type(c) == 'table' and type(c.id) == 'string' then
    redis.call('HSET', KEYS[2], 'cancel', c.id)
    return 2
  end
end
return 0
"""

# The host takes an actor's next call (it runs one at a time, so a call already in flight
# is its own, taken by a try whose answer was lost: it gets that one again, and a retry never
# loses a call). KEYS: record, calls. ARGV: holder.
# Returns {0} the actor is no longer this host's, else {1, call or false}.
TAKE_LUA: Final = """
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return {0} end
redis.call('HDEL', KEYS[1], 'woken')
local cur = redis.call('HGET', KEYS[1], 'running')
if cur then return {1, cur} end
local c = redis.call('LPOP', KEYS[2])
if c then redis.call('HSET', KEYS[1], 'running', c) else redis.call('HDEL', KEYS[1], 'running') end
return {1, c or false}
"""

# Record a call's outcome and take the next call, in one round trip. The reply goes out even
# if the actor left this host meanwhile (destroyed: a running call finishes; moved: its new
# host already told the caller, who ignores a second answer). Sent again after a lost
# answer, it finds its call recorded (no longer in flight) and answers the same.
# KEYS: record, calls. ARGV: holder, reply key, reply, snapshot op ('keep', 'set', 'del'),
# snapshot, restarts, the call, child id, pid (where it runs now: a restart moves it).
# Returns {0} the actor is no longer this host's, else
# {1, next call or false}.
FINISH_LUA: Final = (
    """
local function push()
  if ARGV[2] ~= '' and string.sub(ARGV[2], 1, %(n)d) == '%(prefix)s' then
    redis.call('RPUSH', ARGV[2], ARGV[3])
    redis.call('EXPIRE', ARGV[2], %(ttl)d)
  end
end
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then
  push()
  return {0}
end
local cur = redis.call('HGET', KEYS[1], 'running')
if cur ~= ARGV[7] then return {1, cur or false} end
push()
if ARGV[4] == 'set' then
  redis.call('HSET', KEYS[1], 'snapshot', ARGV[5])
elseif ARGV[4] == 'del' then
  redis.call('HDEL', KEYS[1], 'snapshot')
end
redis.call('HSET', KEYS[1], 'restarts', ARGV[6], 'child', ARGV[8], 'pid', ARGV[9])
redis.call('HDEL', KEYS[1], 'woken', 'cancel')
local c = redis.call('LPOP', KEYS[2])
if c then redis.call('HSET', KEYS[1], 'running', c) else redis.call('HDEL', KEYS[1], 'running') end
return {1, c or false}
""".replace("%(n)d", str(len(REPLY_PREFIX)))
    .replace("%(prefix)s", REPLY_PREFIX)
    .replace("%(ttl)d", str(REPLY_TTL))
)

# A host with free actor slots claims actors that wait for a host (new, handed back) or
# whose holder's lease lapsed (it died). A lapsed holder's call in flight fails with
# ActorDied; then the actor restarts here if restarts remain (counted), else it becomes
# unavailable and its queued calls fail. KEYS: registry. ARGV: now, lease expiry, host name,
# slots, record prefix, calls prefix, starting prefix, queue.
# Returns {name, type, args, max_restarts, restarts, snapshot, holder, state} per claim.
CLAIM_LUA: Final = (
    _PRELUDE
    + """
local names = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[4])
local out = {}
for _, n in ipairs(names) do
  local rk = ARGV[5] .. n
  local f = redis.call('HMGET', rk, 'state', 'type', 'args', 'max_restarts', 'restarts',
                       'holder', 'running', 'snapshot', 'host')
  if not f[1] then
    redis.call('ZREM', KEYS[1], n)
  elseif f[1] == 'unavailable' then
    redis.call('ZADD', KEYS[1], '+inf', n)
  else
    local state, restarts = f[1], tonumber(f[5]) or 0
    local lapsed = f[6] and f[6] ~= '' and state ~= 'starting'
    local gone = 'the host holding actor ' .. n .. ' (' .. (f[9] or '?') ..
                 ') stopped renewing its lease (it died or lost Redis)'
    if lapsed and restarts >= (tonumber(f[4]) or 0) then
      if f[7] then
        reply_to(f[7], error_json('ActorDied', gone .. ' during this call; no restarts left',
                                  ',"will_restart":false'))
      end
      local why = 'actor ' .. n .. ' is unavailable (restarts used: ' .. restarts .. ' of ' ..
                  (f[4] or '0') .. '): ' .. gone
      reply_all(ARGV[6] .. n, error_json('ActorUnavailable', why, ''))
      redis.call('HSET', rk, 'state', 'unavailable', 'holder', '', 'host', '',
                 'error', cjson.encode({type = 'ActorUnavailable', message = why}))
      redis.call('HDEL', rk, 'running', 'woken', 'cancel', 'child', 'pid')
      redis.call('ZADD', KEYS[1], '+inf', n)
    else
      if lapsed then
        restarts = restarts + 1
        if f[7] then
          reply_to(f[7], error_json('ActorDied', gone .. ' during this call; it restarts',
                                    ',"will_restart":true'))
        end
      end
      if state ~= 'starting' then state = 'restarting' end
      local holder = ARGV[3] .. '#' .. redis.call('HINCRBY', rk, 'placements', 1)
      redis.call('HSET', rk, 'holder', holder, 'host', ARGV[3], 'state', state,
                 'restarts', restarts)
      redis.call('HDEL', rk, 'running', 'woken', 'cancel', 'child', 'pid')
      redis.call('ZADD', KEYS[1], ARGV[2], n)
      out[#out + 1] = {n, f[2], f[3], f[4], restarts, f[8] or false, holder, state}
    end
  end
end
return out
"""
)

# The actor started on the claiming host: its creators are told. KEYS: record, starting.
# ARGV: holder, child id, pid. Returns 1, or 0 if it is no longer this host's.
STARTED_LUA: Final = (
    _PRELUDE
    + """
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'ready', 'child', ARGV[2], 'pid', ARGV[3])
redis.call('HDEL', KEYS[1], 'error')
reply_all(KEYS[2], ',"result":null')
return 1
"""
)

# The actor cannot run here any more: its first start failed (the name is freed, as
# locally), or a restart failed or its restarts are used up (unavailable; the name stays).
# Creators get the error, queued calls ActorUnavailable. KEYS: record, registry, starting,
# calls. ARGV: holder, name, error JSON (the creators'), unavailable JSON (the calls'),
# '1' to free the name. Returns 1, or 0 if it is no longer this host's.
GIVE_UP_LUA: Final = (
    _PRELUDE
    + """
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
reply_all(KEYS[3], ',"error":' .. ARGV[3])
reply_all(KEYS[4], ',"error":' .. ARGV[4])
if ARGV[5] == '1' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
else
  redis.call('HSET', KEYS[1], 'state', 'unavailable', 'holder', '', 'host', '', 'error', ARGV[4])
  redis.call('HDEL', KEYS[1], 'running', 'woken', 'cancel', 'child', 'pid')
  redis.call('ZADD', KEYS[2], '+inf', ARGV[2])
end
return 1
"""
)

# A host hands an actor back (it stops, or has no room after all): another host claims it,
# from its snapshot, without counting a restart; its queued calls wait. A call still in
# flight (past the stop's grace) fails with ActorDied. KEYS: record, registry, placing.
# ARGV: holder, name, ActorDied JSON. Returns 1, or 0 if it is no longer this host's.
RELEASE_LUA: Final = (
    _PRELUDE
    + """
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
local running = redis.call('HGET', KEYS[1], 'running')
if running then reply_to(running, ',"error":' .. ARGV[3]) end
local st = redis.call('HGET', KEYS[1], 'state')
if st ~= 'starting' then st = 'restarting' end
redis.call('HSET', KEYS[1], 'holder', '', 'host', '', 'state', st)
redis.call('HDEL', KEYS[1], 'running', 'woken', 'cancel', 'child', 'pid')
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('RPUSH', KEYS[3], ARGV[2])
redis.call('LTRIM', KEYS[3], -%(hints)d, -1)
return 1
""".replace("%(hints)d", str(MAX_PLACING_HINTS))
)

# A host's heartbeat: renew the leases of the actors it holds. KEYS: registry. ARGV: lease
# expiry, record prefix, calls prefix, then name, holder pairs. Returns {names no longer
# this host's, names with queued calls and none in flight, name/call id pairs to cancel}.
RENEW_LUA: Final = """
local lost, ready, cancels = {}, {}, {}
for i = 4, #ARGV, 2 do
  local n, h = ARGV[i], ARGV[i + 1]
  local rk = ARGV[2] .. n
  local f = redis.call('HMGET', rk, 'holder', 'running', 'cancel')
  if f[1] ~= h then
    lost[#lost + 1] = n
  else
    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], n)
    if not f[2] and redis.call('LLEN', ARGV[3] .. n) > 0 then ready[#ready + 1] = n end
    if f[3] then
      cancels[#cancels + 1] = n
      cancels[#cancels + 1] = f[3]
      redis.call('HDEL', rk, 'cancel')
    end
  end
end
return {lost, ready, cancels}
"""

# Destroy an actor: queued calls and creators get ActorUnavailable, its host is woken (to
# stop it once a running call has finished), subscribers are told. KEYS: record, registry,
# calls, starting. ARGV: name, ActorUnavailable JSON, wake prefix, events channel.
# Returns 1, or 0 if there is no such actor.
DESTROY_LUA: Final = (
    _PRELUDE
    + """
local host = redis.call('HGET', KEYS[1], 'host')
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
reply_all(KEYS[3], ',"error":' .. ARGV[2])
reply_all(KEYS[4], ',"error":' .. ARGV[2])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if host and host ~= '' then
  redis.call('RPUSH', ARGV[3] .. host, ARGV[1])
  redis.call('EXPIRE', ARGV[3] .. host, %(ttl)d)
end
redis.call('PUBLISH', ARGV[4], '{"end":"destroyed"}')
return 1
""".replace("%(ttl)d", str(REPLY_TTL))
)
