-- The queue service's script, entry: runs the operation ARGV[2] names.

if OP == 'commit' then
  return commit(cjson.decode(ARGV[4]))
elseif OP == 'load' then
  return load(ARGV[4], ARGV[5], ARGV[6])
elseif OP == 'bury' then
  return bury(ARGV[4], { unpack(ARGV, 5) })
elseif OP == 'next_due' then
  return next_due(ARGV[4])
elseif OP == 'counts' then
  return counts(ARGV[4])
elseif OP == 'list' then
  return list(ARGV[4], ARGV[5], ARGV[6], ARGV[7])
elseif OP == 'release_of' then
  return release_of(ARGV[4])
elseif OP == 'release_expired' then
  return release_expired(ARGV[4])
elseif OP == 'prune' then
  return prune(ARGV[4], ARGV[5], ARGV[6], ARGV[7])
end
return redis.error_reply('unknown queue operation ' .. tostring(OP))
