-- Apply one micro-batch of enriched reviews to the per-product aggregates, atomically and at most
-- once per input offset: per topic-partition the highest applied offset is stored, and records at or
-- below it are skipped, so a batch replayed after a crash or a rebalance changes nothing.
--
-- ARGV[1]: key prefix. ARGV[2]: JSON list of partitions:
--   {"topic": str, "partition": int, "records": [{"o": offset, "i": review_id, "p": product_id,
--    "s": sentiment, "r": rating, "a": [aspect, ...], "t": epoch seconds}], "dead": [offset, ...],
--    "carried_duplicates": [offset, ...] (replayed duplicates, kept in the new copy),
--    "inflight": str (JSON object offset -> enriched record)}
-- A review_id already counted for its product is a duplicate: not counted again, and its offset is
-- returned so the worker dead-letters it.
-- Returns {applied, skipped, dead_letters, JSON {"topic:partition": [duplicate offset, ...]}}.
local prefix = ARGV[1]
local batch = cjson.decode(ARGV[2])
local wm_key = prefix .. ':watermarks'
local totals_key = prefix .. ':totals'
local applied, skipped, dead = 0, 0, 0
local touched = {}
local dups_json = {}

for _, part in ipairs(batch) do
  local field = part.topic .. ':' .. string.format('%d', part.partition)
  local wm = tonumber(redis.call('HGET', wm_key, field) or '-1')
  local high = wm
  local any_new = false
  local dups = {}
  local kept = {}
  for _, o in ipairs(part.carried_duplicates) do kept[#kept + 1] = string.format('%d', o) end
  for _, r in ipairs(part.records) do
    if r.o > wm then
      any_new = true
      if r.o > high then high = r.o end
    end
    if r.o <= wm then
      skipped = skipped + 1
    elseif redis.call('SADD', prefix .. ':seen:' .. r.p, r.i) == 0 then
      dups[#dups + 1] = string.format('%d', r.o)
    else
      applied = applied + 1
      local key = prefix .. ':product:' .. r.p
      redis.call('HINCRBY', key, 'review_count', 1)
      redis.call('HINCRBY', key, 'sentiment:' .. r.s, 1)
      redis.call('HINCRBYFLOAT', key, 'rating_sum', r.r)
      redis.call('HINCRBY', totals_key, 'reviews', 1)
      redis.call('HINCRBY', totals_key, 'sentiment:' .. r.s, 1)
      for _, a in ipairs(r.a) do
        redis.call('HINCRBY', key, 'aspect:' .. a, 1)
        redis.call('HINCRBY', key, 'aspect:' .. a .. ':' .. r.s, 1)
        redis.call('ZINCRBY', prefix .. ':rank:aspect:' .. a, 1, r.p)
        if r.s == 'negative' then
          redis.call('ZINCRBY', prefix .. ':rank:complaints:' .. a, 1, r.p)
        end
      end
      local seen = redis.call('HMGET', key, 'first_seen', 'last_seen')
      if not seen[1] or r.t < tonumber(seen[1]) then redis.call('HSET', key, 'first_seen', r.t) end
      if not seen[2] or r.t > tonumber(seen[2]) then redis.call('HSET', key, 'last_seen', r.t) end
      touched[r.p] = true
    end
  end
  if #dups > 0 then redis.call('HINCRBY', totals_key, 'duplicates', #dups) end
  if #dups > 0 then dups_json[#dups_json + 1] = cjson.encode(field) .. ':[' .. table.concat(dups, ',') .. ']' end
  for _, o in ipairs(dups) do kept[#kept + 1] = o end
  local part_dead = 0
  for _, o in ipairs(part.dead) do
    if o > wm then
      part_dead = part_dead + 1
      if o > high then high = o end
    end
  end
  if part_dead > 0 then redis.call('HINCRBY', totals_key, 'dead_letters', part_dead) end
  dead = dead + part_dead
  if high > wm then redis.call('HSET', wm_key, field, string.format('%d', high)) end
  -- Keep what this batch produced, so a replay publishes exactly what was counted here.
  if any_new then
    redis.call('SET', prefix .. ':inflight:' .. part.topic .. ':' .. string.format('%d', part.partition),
      '{"duplicates":[' .. table.concat(kept, ',') .. '],"records":' .. part.inflight .. '}')
  end
end

for pid, _ in pairs(touched) do
  local v = redis.call('HMGET', prefix .. ':product:' .. pid,
    'review_count', 'sentiment:negative', 'sentiment:positive', 'rating_sum')
  local n = tonumber(v[1])
  redis.call('ZADD', prefix .. ':rank:review_count', n, pid)
  redis.call('ZADD', prefix .. ':rank:negative_share', tonumber(v[2] or '0') / n, pid)
  redis.call('ZADD', prefix .. ':rank:positive_share', tonumber(v[3] or '0') / n, pid)
  redis.call('ZADD', prefix .. ':rank:rating_mean', tonumber(v[4]) / n, pid)
end

return {applied, skipped, dead, '{' .. table.concat(dups_json, ',') .. '}'}
