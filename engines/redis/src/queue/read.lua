-- The queue service's script, reads (each first moves the scheduled tasks that fell due into
-- the ready set) and the releases of claims.

-- Up to limit claimable tasks of queue in claim order, after the member prefix `after` (empty:
-- from the start): pairs of the member and the task hash as stored (empty when it is gone).
local function load(queue, after, limit)
  promote(queue)
  local from = after == '' and '-' or ('(' .. after .. '~')
  local out = {}
  local page = redis.call('ZRANGEBYLEX', queue_key(queue, 'ready'), from, '+', 'LIMIT', 0, limit)
  for _, m in ipairs(page) do
    local flat = redis.pcall('HGETALL', task_key(string.sub(m, -36)))
    if type(flat) ~= 'table' or flat.err then
      flat = {}
    end
    out[#out + 1] = { m, flat }
  end
  finish()
  return out
end

-- Dead-letters the task of ready-set member m of queue (marked dead with error why); a member
-- whose hash is gone only leaves the sets.
local function bury_one(queue, m, why)
  local id, seq = string.sub(m, -36), string.sub(m, 26, 41)
  redis.call('ZREM', queue_key(queue, 'pending'), id)
  local key = task_key(id)
  if redis.call('EXISTS', key) == 0 then
    return
  end
  local dedup = redis.pcall('HGET', key, 'dedup_key')
  local dead = redis.pcall('HSET', key, 'state', 'dead', 'failed_at', int(NOW), 'error', why)
  if type(dead) == 'number' and string.match(seq, '^%d+$') then
    redis.call('ZADD', queue_key(queue, 'dead'), seq, id)
  end
  if type(dedup) == 'string' and redis.call('HGET', queue_key(queue, 'dedup'), dedup) == id then
    redis.call('HDEL', queue_key(queue, 'dedup'), dedup)
  end
end

-- Dead-letters the members of queue's ready set that the daemon could not decode, given as
-- pairs of member and error; returns how many were still there (and are now out of it).
local function bury(queue, list)
  local n = 0
  for i = 1, #list, 2 do
    if redis.call('ZREM', queue_key(queue, 'ready'), list[i]) == 1 then
      n = n + 1
      bury_one(queue, list[i], list[i + 1])
    end
  end
  touched[queue] = true
  finish()
  return n
end

-- When the next scheduled task of queue becomes due (ms), or nil.
local function next_due(queue)
  promote(queue)
  finish()
  local first = redis.call('ZRANGE', queue_key(queue, 'due'), 0, 0, 'WITHSCORES')
  return first[2]
end

local function counts(queue)
  promote(queue)
  finish()
  local out = {}
  for i, state in ipairs({ 'pending', 'scheduled', 'claimed', 'completed', 'dead' }) do
    out[i] = redis.call('ZCARD', queue_key(queue, state))
  end
  return out
end

-- Up to limit tasks of queue in the index `index` (a state, or 'all') with seq > after, by
-- seq: pairs of seq and the task hash as stored.
local function list(queue, index, after, limit)
  promote(queue)
  finish()
  local out = {}
  local page = redis.call('ZRANGEBYSCORE', queue_key(queue, index), '(' .. after, '+inf',
    'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #page, 2 do
    local flat = redis.pcall('HGETALL', task_key(page[i]))
    if type(flat) ~= 'table' or flat.err then
      flat = {}
    end
    out[#out + 1] = { page[i + 1], flat }
  end
  return out
end

-- Expires the claims among ids that keep(t) selects (whoever holds them); entries of the lease
-- set whose task is gone, no longer claimed or undecodable leave it. Returns the queues
-- touched and the ids of the undecodable tasks.
local function expire(ids, keep)
  local queues, corrupt = {}, {}
  for _, id in ipairs(ids) do
    local t, why = read(id)
    if t and t.state == 'claimed' then
      if keep(t) then
        SETTLE.expire(t)
        queues[#queues + 1] = t.queue
      end
    else
      redis.call('ZREM', LEASES, id)
      if why == 'corrupt' then
        corrupt[#corrupt + 1] = id
      end
    end
  end
  finish()
  return { queues, corrupt }
end

-- Releases every open claim taken through daemon `via`.
local function release_of(via)
  return expire(redis.call('ZRANGE', LEASES, 0, -1), function(t)
    return t.via == via
  end)
end

-- Releases every claim whose lease ran out more than grace ms ago.
local function release_expired(grace)
  local ids = redis.call('ZRANGEBYSCORE', LEASES, '-inf', '(' .. int(NOW - tonumber(grace)))
  return expire(ids, function()
    return true
  end)
end
