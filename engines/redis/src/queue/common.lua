-- The queue service's script, common part: key names, the clock, reading a task hash safely,
-- and moving a task between the sets of its states. Redis runs one script at a time, whole, so
-- each call is atomic; but it keeps the writes made before an error, so nothing here raises
-- once a call has written (arguments are checked first, foreign hashes read with pcall).
--
-- ARGV[1]: the key prefix, ARGV[2]: the operation, ARGV[3]: the origin named in
-- notifications, ARGV[4..]: the operation's arguments.

local PREFIX = ARGV[1] .. ':q:'
local OP = ARGV[2]
local ORIGIN = ARGV[3]
local FEED = ARGV[1] .. ':qfeed'
local LEASES = PREFIX .. 'leases'
local QUEUES = PREFIX .. 'queues'
local SEQ = PREFIX .. 'seq'

local function queue_key(queue, part)
  return PREFIX .. 'queue:' .. queue .. ':' .. part
end

local function task_key(id)
  return PREFIX .. 'task:' .. id
end

-- Integers travel as decimal strings: a Lua number is a double, exact below 2^53.
local function int(n)
  return string.format('%.0f', n)
end

local clock = redis.call('TIME')
local NOW = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local I32 = 2147483647
local EXACT = 9007199254740991
-- Milliseconds that chrono's DateTime can hold, and that the ready set's member encodes.
local TIME = 8000000000000000
local STATES = { pending = true, scheduled = true, claimed = true, completed = true, dead = true }
local REQUIRED = {
  { 'seq', 1, EXACT }, { 'priority', -I32 - 1, I32 }, { 'created_at', 0, 999999999999999 },
  { 'scheduled_for', -TIME, TIME }, { 'attempts', -I32 - 1, I32 },
  { 'max_attempts', -I32 - 1, I32 },
}
local OPTIONAL = { 'claimed_at', 'lease_until', 'completed_at', 'failed_at' }

local function is_int(v, lo, hi)
  if type(v) ~= 'string' or not string.match(v, '^%-?%d+$') then
    return false
  end
  local n = tonumber(v)
  return n ~= nil and n >= lo and n <= hi
end

-- Whether the fields the scripts work with are there and in range.
local function intact(t, id)
  if t.id ~= id or t.queue == nil or not STATES[t.state] then
    return false
  end
  for _, r in ipairs(REQUIRED) do
    if not is_int(t[r[1]], r[2], r[3]) then
      return false
    end
  end
  for _, f in ipairs(OPTIONAL) do
    if t[f] ~= nil and not is_int(t[f], -TIME, TIME) then
      return false
    end
  end
  return t.state ~= 'claimed' or (t.claimed_by ~= nil and t.lease_until ~= nil)
end

-- The task stored under id, as a table of its fields; or nil and why: 'missing', or
-- 'corrupt' when something else wrote a hash the scripts cannot work with.
local function read(id)
  local flat = redis.pcall('HGETALL', task_key(id))
  if type(flat) ~= 'table' or flat.err then
    return nil, 'corrupt'
  end
  if #flat == 0 then
    return nil, 'missing'
  end
  local t = {}
  for i = 1, #flat, 2 do
    t[flat[i]] = flat[i + 1]
  end
  if not intact(t, id) then
    return nil, 'corrupt'
  end
  return t
end

-- The task's member of its queue's ready set: the claim order (priority descending, then
-- created_at, then seq) as fixed-width digits, then the id. Every score is 0: lexical order.
local function member(t)
  local rank = string.format('%010.0f%015.0f%016.0f', I32 - tonumber(t.priority),
    tonumber(t.created_at), tonumber(t.seq))
  return rank .. t.id
end

local FIELDS = {
  'id', 'seq', 'queue', 'payload', 'priority', 'scheduled_for', 'created_at', 'attempts',
  'max_attempts', 'claimed_by', 'claimed_at', 'lease_until', 'completed_at', 'failed_at',
  'error', 'result', 'dedup_key',
}

-- The task's fields as a flat list of names and values (without the payload when the daemon
-- knows it).
local function fields(t, known)
  local out = {}
  for _, f in ipairs(FIELDS) do
    if t[f] ~= nil and not (known and f == 'payload') then
      out[#out + 1] = f
      out[#out + 1] = t[f]
    end
  end
  return out
end

-- Queues whose claimable sets changed, and queues where tasks became claimable.
local touched, woken = {}, {}

-- Takes the task out of the sets of its state.
local function unplace(t)
  local q, s = t.queue, t.state
  redis.call('ZREM', queue_key(q, s), t.id)
  if s == 'pending' then
    redis.call('ZREM', queue_key(q, 'ready'), member(t))
  elseif s == 'scheduled' then
    redis.call('ZREM', queue_key(q, 'due'), t.id)
  elseif s == 'claimed' then
    redis.call('ZREM', LEASES, t.id)
  end
end

-- Puts the task into the sets of its state; a finished task frees its dedup key.
local function place(t)
  local q, s = t.queue, t.state
  redis.call('ZADD', queue_key(q, s), t.seq, t.id)
  if s == 'pending' then
    redis.call('ZADD', queue_key(q, 'ready'), 0, member(t))
  elseif s == 'scheduled' then
    redis.call('ZADD', queue_key(q, 'due'), t.scheduled_for, t.id)
  elseif s == 'claimed' then
    redis.call('ZADD', LEASES, t.lease_until, t.id)
  elseif t.dedup_key and redis.call('HGET', queue_key(q, 'dedup'), t.dedup_key) == t.id then
    redis.call('HDEL', queue_key(q, 'dedup'), t.dedup_key)
  end
  touched[q] = true
end

-- Applies changes (field -> value, or false to clear the field) to t and its hash.
local function save(t, changes)
  local set, clear = {}, {}
  for f, v in pairs(changes) do
    if v then
      t[f] = v
      set[#set + 1] = f
      set[#set + 1] = v
    else
      t[f] = nil
      clear[#clear + 1] = f
    end
  end
  if #set > 0 then
    redis.call('HSET', task_key(t.id), unpack(set))
  end
  if #clear > 0 then
    redis.call('HDEL', task_key(t.id), unpack(clear))
  end
end

-- Moves the task to state, with changes.
local function move(t, state, changes)
  unplace(t)
  changes.state = state
  save(t, changes)
  place(t)
end

-- The claimable state of a task due at `at` (ms).
local function claimable(at)
  return tonumber(at) > NOW and 'scheduled' or 'pending'
end

-- Makes the task claimable again (due or scheduled), with changes; its queue is notified.
local function reopen(t, changes)
  move(t, claimable(changes.scheduled_for or t.scheduled_for), changes)
  woken[t.queue] = true
end

-- Moves the scheduled tasks of queue that are due by now into its ready set.
local function promote(queue)
  local due = redis.call('ZRANGEBYSCORE', queue_key(queue, 'due'), '-inf', int(NOW))
  for _, id in ipairs(due) do
    local t = read(id)
    if t and t.state == 'scheduled' and t.queue == queue then
      move(t, 'pending', {})
    else
      redis.call('ZREM', queue_key(queue, 'due'), id)
    end
  end
end

-- Keeps the set of queues with claimable tasks and publishes the queues that were woken.
local function finish()
  for q in pairs(touched) do
    local open = redis.call('ZCARD', queue_key(q, 'ready')) + redis.call('ZCARD', queue_key(q, 'due'))
    if open > 0 then
      redis.call('SADD', QUEUES, q)
    else
      redis.call('SREM', QUEUES, q)
    end
  end
  for q in pairs(woken) do
    redis.call('PUBLISH', FEED, ORIGIN .. '\n' .. q)
  end
end
