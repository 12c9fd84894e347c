-- The queue service's script, writes: a group commit's pushes, claims and settlements, applied
-- in that order, in one call.

local function exhausted(t)
  return tonumber(t.attempts) >= tonumber(t.max_attempts)
end

-- Retry delay after the n-th failed attempt: 1 s doubling to 1 h, times the jitter the daemon
-- drew (0.75 to 1.25).
local function backoff(t, jitter)
  local n = math.max(tonumber(t.attempts) - 1, 0)
  return math.floor(math.min(1000 * 2 ^ n, 3600000) * jitter)
end

local SETTLE = {}

function SETTLE.complete(t, s)
  move(t, 'completed', { completed_at = int(NOW), result = s.result or false, lease_until = false })
end

function SETTLE.extend(t, s)
  move(t, 'claimed', { lease_until = int(NOW + s.ms) })
end

function SETTLE.release(t)
  reopen(t, {
    claimed_by = false, claimed_at = false, lease_until = false, lease_id = false, via = false,
    attempts = int(tonumber(t.attempts) - 1),
  })
end

function SETTLE.fail(t, s)
  local changes = { error = s.error, lease_until = false, lease_id = false, via = false }
  if exhausted(t) then
    changes.failed_at = int(NOW)
    return move(t, 'dead', changes)
  end
  changes.claimed_by = false
  changes.scheduled_for = int(NOW + (s.ms or backoff(t, s.jitter)))
  reopen(t, changes)
end

function SETTLE.expire(t)
  local changes = { lease_until = false, lease_id = false, via = false }
  if exhausted(t) then
    changes.failed_at = int(NOW)
    changes.error = 'lease expired on attempt ' .. t.attempts
    return move(t, 'dead', changes)
  end
  changes.claimed_by = false
  reopen(t, changes)
end

-- Why a group cannot be applied (before anything is written), or nil.
local function refuse(batch)
  local seen = {}
  for _, p in ipairs(batch.pushes) do
    if seen[p.id] or redis.call('EXISTS', task_key(p.id)) == 1 then
      return 'task ' .. p.id .. ' exists already'
    end
    seen[p.id] = true
  end
  for _, s in ipairs(batch.settles) do
    if not SETTLE[s.kind] then
      return 'unknown settlement ' .. tostring(s.kind)
    end
    if (s.kind == 'extend' and not s.ms) or (s.kind == 'fail' and not (s.ms or s.jitter)) then
      return 'settlement ' .. s.kind .. ' of ' .. s.id .. ' lacks its duration'
    end
  end
  return nil
end

-- The pending task holding p's dedup key, if there is one.
local function duplicate(p)
  if not p.dedup_key then
    return nil
  end
  local id = redis.call('HGET', queue_key(p.queue, 'dedup'), p.dedup_key)
  local t = id and read(id)
  if t and t.queue == p.queue and t.dedup_key == p.dedup_key and t.state ~= 'completed'
      and t.state ~= 'dead' then
    return t
  end
  return nil
end

-- Inserts a task (claimed at once when p names an agent), or returns the pending one holding
-- its dedup key.
local function push(p)
  local existing = duplicate(p)
  if existing then
    return { 'existing', fields(existing, false) }
  end
  local t = {
    id = p.id, queue = p.queue, payload = p.payload, priority = int(p.priority),
    seq = int(redis.call('INCR', SEQ)), created_at = int(NOW),
    scheduled_for = int(p.run_at or NOW), attempts = '0', max_attempts = int(p.max_attempts),
    dedup_key = p.dedup_key,
  }
  if p.agent then
    t.state, t.claimed_by, t.claimed_at = 'claimed', p.agent, int(NOW)
    t.lease_until, t.lease_id, t.via, t.attempts = int(NOW + p.lease_ms), p.lease_id, ORIGIN, '1'
  else
    t.state = claimable(t.scheduled_for)
    woken[t.queue] = true
  end
  local flat = {}
  for f, v in pairs(t) do
    flat[#flat + 1] = f
    flat[#flat + 1] = v
  end
  redis.call('HSET', task_key(t.id), unpack(flat))
  redis.call('ZADD', queue_key(t.queue, 'all'), t.seq, t.id)
  if t.dedup_key then
    redis.call('HSET', queue_key(t.queue, 'dedup'), t.dedup_key, t.id)
  end
  place(t)
  local out = { 'created', t.seq, t.scheduled_for, t.created_at }
  if p.agent then
    out[5], out[6], out[7] = t.attempts, t.claimed_at, t.lease_until
  end
  return out
end

-- Claims task id for c's lease if it is still claimable and due; returns it claimed, or nil.
local function claim(id, c)
  local t = read(id)
  if not t or (t.state ~= 'pending' and t.state ~= 'scheduled')
      or tonumber(t.scheduled_for) > NOW then
    return nil
  end
  move(t, 'claimed', {
    claimed_by = c.agent, claimed_at = int(NOW), lease_until = int(NOW + c.lease_ms),
    lease_id = c.lease_id, via = ORIGIN, attempts = int(tonumber(t.attempts) + 1),
  })
  return t
end

-- Claims up to c.max of the best claimable tasks of c.queue; returns their fields.
local function claim_next(c)
  promote(c.queue)
  local won, skip = {}, 0
  while #won < c.max do
    local page = redis.call('ZRANGEBYLEX', queue_key(c.queue, 'ready'), '-', '+', 'LIMIT',
      skip, int(c.max - #won))
    if #page == 0 then
      break
    end
    for _, m in ipairs(page) do
      local t = claim(string.sub(m, -36), c)
      if t then
        won[#won + 1] = fields(t, false)
      else
        skip = skip + 1
      end
    end
  end
  return won
end

-- Why a settlement by s changed nothing (the task exists).
local function refusal(t, s)
  if t.state == 'completed' or t.state == 'dead' then
    return 'finished'
  end
  local mine = t.claimed_by == s.agent
  if (mine and (s.lease_id == nil or s.lease_id == t.lease_id)) or s.lease_id ~= nil then
    return 'lease_lost'
  end
  return 'not_claimer'
end

-- Applies settlement s where the claim is still s.agent's (under s.lease_id when given, and
-- with a live lease except to expire it).
local function settle(s)
  local t, why = read(s.id)
  if not t then
    return { why == 'corrupt' and 'corrupt' or 'refused', 'not_found' }
  end
  local held = t.state == 'claimed' and t.claimed_by == s.agent
      and (s.lease_id == nil or s.lease_id == t.lease_id)
  local live = s.kind == 'expire' or tonumber(t.lease_until or '0') > NOW
  if not (held and live) then
    return { 'refused', refusal(t, s) }
  end
  SETTLE[s.kind](t, s)
  return { 'settled', fields(t, s.known) }
end

local function commit(batch)
  local refused = refuse(batch)
  if refused then
    return redis.error_reply(refused)
  end
  local pushed, claimed, picked, settled = {}, {}, {}, {}
  for i, p in ipairs(batch.pushes) do
    pushed[i] = push(p)
  end
  for _, c in ipairs(batch.claims) do
    local t = claim(c.id, c)
    if t then
      claimed[#claimed + 1] = { t.id, t.attempts, t.claimed_at, t.lease_until }
    end
  end
  for i, c in ipairs(batch.claim_next) do
    picked[i] = claim_next(c)
  end
  for i, s in ipairs(batch.settles) do
    settled[i] = settle(s)
  end
  finish()
  return { pushed, claimed, picked, settled }
end

-- Deletes the tasks of queue in state ('completed' or 'dead') that finished at least keep_ms
-- ago, among the first `limit` of the state's set (oldest push first); an id whose hash is
-- gone leaves the sets too, a hash the scripts cannot read stays. Returns how many it deleted
-- and how many ids it looked at.
local function prune(queue, state, keep_ms, limit)
  local field = ({ completed = 'completed_at', dead = 'failed_at' })[state]
  if not field or not is_int(keep_ms, 0, EXACT) or not is_int(limit, 1, 100000) then
    return redis.error_reply('prune: bad arguments')
  end
  local set, all = queue_key(queue, state), queue_key(queue, 'all')
  local cutoff = NOW - tonumber(keep_ms)
  local ids = redis.call('ZRANGE', set, 0, tonumber(limit) - 1)
  local deleted = 0
  for _, id in ipairs(ids) do
    local t, why = read(id)
    local due = t and t.state == state and t.queue == queue and t[field]
        and tonumber(t[field]) <= cutoff
    if due or why == 'missing' then
      redis.call('ZREM', set, id)
      redis.call('ZREM', all, id)
    end
    if due then
      redis.call('DEL', task_key(id))
      deleted = deleted + 1
    end
  end
  return { deleted, #ids }
end
