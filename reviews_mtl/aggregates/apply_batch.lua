-- Apply one micro-batch to the per-product aggregates, atomically and at most once per input offset: per
-- topic-partition the highest applied offset (the watermark) is stored, and records at or below it are skipped,
-- so a batch replayed after a crash or a rebalance changes nothing.
--
-- Each review's contribution is kept in compact form (below), so an edit replaces it and a delete retracts it;
-- a message that is neither new nor newer is a re-send: counted nowhere, returned as "silent".
--
-- ARGV[1]: key prefix. ARGV[2]: JSON list of partitions:
--   {"topic", "partition",
--    "start": the offset the worker's consumer started this partition from (its committed offset), -1 unknown,
--    "tid": the input topic's id, "" unknown, "first": the batch's first offset,
--    "records": [{"o": offset, "k": state bucket, "f": state field, "op": "u"|"d", "v": version or "",
--                 "e": event time (whole seconds) or "", "p": product id, "s": sentiment, "r": rating,
--                 "m": aspect bitmask, "t": seen time (whole seconds), "x": the record as published (JSON)}],
--    "dead": [offset, ...], "carried": [[offset, JSON], ...], "carried_silent": [[offset, "k:f"], ...],
--    "failed": [[offset, why], ...]}
--   ("carried": counted by an earlier attempt of this batch and published again now; kept in the new copy;
--    "failed": valid reviews the worker itself failed on, dead-lettered; a replay dead-letters them again).
-- ARGV[3]: JSON {"aspects": [aspect names, bit 0 first], "lock": the rebuild token this caller holds, or ""}.
--
-- Before anything is written, every partition is checked: a start past watermark + 1 means Redis lost work that
-- Kafka committed ("redis_behind"), a topic id unlike the stored one means the topic was recreated
-- ("topic_changed"), and a rebuild in progress refuses every writer but the rebuild ("rebuild"). Any of them:
-- nothing is applied, and the violations are returned.
--
-- Review state: hash P:rev:{k}, field f (k, f: a 64-bit fingerprint of product id + review id, split) →
--   "{s}{r}|{m}|{t}|{v}|{e}" (s: n/u/p, r: rating, m: aspects, t: seen time, v: version, e: event time) or
--   "D|{v}|{e}" for a retracted review (a tombstone: a late re-send of it is not counted again).
--
-- Returns JSON {"applied", "edits", "deletes", "skipped", "dead", "silent": {"topic:partition": [offset...]},
--               "violations": [{"topic", "partition", "reason", "watermark", "stored"}]}.
local prefix = ARGV[1]
local batch = cjson.decode(ARGV[2])
local opts = cjson.decode(ARGV[3])
local ASPECTS = opts.aspects
local wm_key = prefix .. ':watermarks'
local tid_key = prefix .. ':topic_ids'
local totals_key = prefix .. ':totals'
local LABELS = {n = 'negative', u = 'neutral', p = 'positive'}
local CODES = {negative = 'n', neutral = 'u', positive = 'p'}

-- 1. Checks, before any write.
local violations = {}
local lock = redis.call('HGET', prefix .. ':meta', 'rebuild')
local wms = {}
for i, part in ipairs(batch) do
  local field = part.topic .. ':' .. string.format('%d', part.partition)
  local wm = tonumber(redis.call('HGET', wm_key, field) or '-1')
  wms[i] = wm
  local bad = nil
  local stored = nil
  if lock and lock ~= opts.lock then
    bad = 'rebuild'
  elseif part.start >= 0 and part.start > wm + 1 then
    bad = 'redis_behind'
  elseif part.tid ~= '' then
    stored = redis.call('HGET', tid_key, part.topic)
    if stored and stored ~= part.tid then bad = 'topic_changed' end
  end
  if bad then
    violations[#violations + 1] = {topic = part.topic, partition = part.partition, reason = bad,
                                   watermark = wm, stored = stored or ''}
  end
end
if #violations > 0 then
  return cjson.encode({applied = 0, edits = 0, deletes = 0, skipped = 0, dead = 0, silent = {},
                       violations = violations})
end

-- 2. Contributions.
local function aspects_of(mask)
  local out = {}
  for i, name in ipairs(ASPECTS) do
    if bit.band(mask, bit.lshift(1, i - 1)) ~= 0 then out[#out + 1] = name end
  end
  return out
end

local touched = {}

-- Add (sign 1) or take back (sign -1) one review's contribution to its product, the rankings and the totals.
local function contribute(pid, label, rating, mask, seen, sign)
  local key = prefix .. ':product:' .. pid
  redis.call('HINCRBY', key, 'review_count', sign)
  redis.call('HINCRBY', key, 'sentiment:' .. label, sign)
  redis.call('HINCRBYFLOAT', key, 'rating_sum', sign * rating)
  redis.call('HINCRBY', totals_key, 'reviews', sign)
  redis.call('HINCRBY', totals_key, 'sentiment:' .. label, sign)
  for _, a in ipairs(aspects_of(mask)) do
    redis.call('HINCRBY', key, 'aspect:' .. a, sign)
    redis.call('HINCRBY', key, 'aspect:' .. a .. ':' .. label, sign)
    local ranks = {prefix .. ':rank:aspect:' .. a}
    if label == 'negative' then ranks[2] = prefix .. ':rank:complaints:' .. a end
    for _, rank in ipairs(ranks) do
      if tonumber(redis.call('ZINCRBY', rank, sign, pid)) <= 0 then redis.call('ZREM', rank, pid) end
    end
  end
  if sign > 0 then
    local seen_at = redis.call('HMGET', key, 'first_seen', 'last_seen')
    if not seen_at[1] or seen < tonumber(seen_at[1]) then redis.call('HSET', key, 'first_seen', seen) end
    if not seen_at[2] or seen > tonumber(seen_at[2]) then redis.call('HSET', key, 'last_seen', seen) end
  end
  touched[pid] = true
end

-- The ordering rule of reviews_mtl.contracts.supersedes: a higher version where both have one, else a later event
-- time where both have one; "" is unknown.
local function newer(v, e, old_v, old_e)
  if v ~= '' and old_v ~= '' then return tonumber(v) > tonumber(old_v) end
  if v == '' and old_v == '' and e ~= '' and old_e ~= '' then return tonumber(e) > tonumber(old_e) end
  return false
end

local function split(state)
  local out = {}
  for piece in string.gmatch(state .. '|', '([^|]*)|') do out[#out + 1] = piece end
  return out
end

local applied, edits, deletes, skipped, dead = 0, 0, 0, 0, 0
local silent_json = {}

-- 3. Apply, partition by partition.
for i, part in ipairs(batch) do
  local field = part.topic .. ':' .. string.format('%d', part.partition)
  local wm = wms[i]
  local high = wm
  local any_new = false
  local published, silent, failed = {}, {}, {}
  for _, c in ipairs(part.failed) do failed[#failed + 1] = '"' .. string.format('%d', c[1]) .. '":' .. cjson.encode(c[2]) end
  for _, c in ipairs(part.carried) do published[#published + 1] = '"' .. string.format('%d', c[1]) .. '":' .. c[2] end
  for _, c in ipairs(part.carried_silent) do silent[#silent + 1] = '"' .. string.format('%d', c[1]) .. '":"' .. c[2] .. '"' end
  local part_silent = {}
  local part_new = 0
  for _, r in ipairs(part.records) do
    if r.o <= wm then
      skipped = skipped + 1
    else
      any_new = true
      part_new = part_new + 1
      if r.o > high then high = r.o end
      local state_key = prefix .. ':rev:' .. r.k
      local old = redis.call('HGET', state_key, r.f)
      local old_f = old and split(old) or nil
      local counted = old_f and old_f[1] ~= 'D'
      local old_v, old_e = '', ''
      if old_f then
        if counted then old_v, old_e = old_f[4], old_f[5] else old_v, old_e = old_f[2], old_f[3] end
      end
      local take = false
      if r.op == 'd' then
        -- A delete applies unless what is counted (or retracted) is provably newer than it.
        take = old_f == nil or (counted and not newer(old_v, old_e, r.v, r.e))
        if take then
          if counted then
            contribute(r.p, LABELS[string.sub(old_f[1], 1, 1)], tonumber(string.sub(old_f[1], 2)),
                       tonumber(old_f[2]), tonumber(old_f[3]), -1)
          end
          redis.call('HSET', state_key, r.f, 'D|' .. r.v .. '|' .. r.e)
          redis.call('HINCRBY', totals_key, 'deletes', 1)
          deletes = deletes + 1
        end
      else
        take = old_f == nil or newer(r.v, r.e, old_v, old_e)
        if take then
          if counted then
            contribute(r.p, LABELS[string.sub(old_f[1], 1, 1)], tonumber(string.sub(old_f[1], 2)),
                       tonumber(old_f[2]), tonumber(old_f[3]), -1)
            redis.call('HINCRBY', totals_key, 'edits', 1)
            edits = edits + 1
          else
            applied = applied + 1
          end
          contribute(r.p, r.s, r.r, r.m, r.t, 1)
          redis.call('HSET', state_key, r.f,
            CODES[r.s] .. r.r .. '|' .. string.format('%d', r.m) .. '|' .. string.format('%d', r.t) .. '|'
            .. r.v .. '|' .. r.e)
        end
      end
      if take then
        published[#published + 1] = '"' .. string.format('%d', r.o) .. '":' .. r.x
      else
        part_silent[#part_silent + 1] = string.format('%d', r.o)
        silent[#silent + 1] = '"' .. string.format('%d', r.o) .. '":"' .. r.k .. ':' .. r.f .. '"'
      end
    end
  end
  if #part_silent > 0 then
    redis.call('HINCRBY', totals_key, 'resends', #part_silent)
    silent_json[#silent_json + 1] = cjson.encode(field) .. ':[' .. table.concat(part_silent, ',') .. ']'
  end
  local part_dead = 0
  for _, o in ipairs(part.dead) do
    if o > wm then
      part_dead = part_dead + 1
      any_new = true
      if o > high then high = o end
    end
  end
  if part_dead > 0 then redis.call('HINCRBY', totals_key, 'dead_letters', part_dead) end
  dead = dead + part_dead
  if part_new + part_dead > 0 then redis.call('HINCRBY', totals_key, 'messages', part_new + part_dead) end
  if high > wm then redis.call('HSET', wm_key, field, string.format('%d', high)) end
  if part.tid ~= '' then redis.call('HSETNX', tid_key, part.topic, part.tid) end
  -- Keep what this batch published, so a replay publishes exactly what was counted here.
  if any_new then
    redis.call('SET', prefix .. ':inflight:' .. field,
      '{"first":' .. string.format('%d', part.first) .. ',"records":{' .. table.concat(published, ',')
      .. '},"silent":{' .. table.concat(silent, ',') .. '},"failed":{' .. table.concat(failed, ',') .. '}}')
  end
end

-- 4. Rankings of the products this batch changed.
local RANKINGS = {'review_count', 'negative_share', 'positive_share', 'rating_mean'}
for pid, _ in pairs(touched) do
  local key = prefix .. ':product:' .. pid
  local v = redis.call('HMGET', key, 'review_count', 'sentiment:negative', 'sentiment:positive', 'rating_sum')
  local n = tonumber(v[1] or '0')
  if n <= 0 then
    -- Every review of the product was retracted: it leaves the aggregates.
    redis.call('DEL', key)
    for _, by in ipairs(RANKINGS) do redis.call('ZREM', prefix .. ':rank:' .. by, pid) end
  else
    redis.call('ZADD', prefix .. ':rank:review_count', n, pid)
    redis.call('ZADD', prefix .. ':rank:negative_share', tonumber(v[2] or '0') / n, pid)
    redis.call('ZADD', prefix .. ':rank:positive_share', tonumber(v[3] or '0') / n, pid)
    redis.call('ZADD', prefix .. ':rank:rating_mean', tonumber(v[4]) / n, pid)
  end
end

return '{"applied":' .. applied .. ',"edits":' .. edits .. ',"deletes":' .. deletes .. ',"skipped":' .. skipped
  .. ',"dead":' .. dead .. ',"silent":{' .. table.concat(silent_json, ',') .. '},"violations":[]}'
