-- Apply one micro-batch to the per-product aggregates, atomically and at most once per input offset: per
-- topic-partition the highest applied offset (the watermark) is stored, and records at or below it are skipped,
-- so a batch replayed after a crash or a rebalance changes nothing. Everything the aggregates hold is updated
-- here, in the same call: lifetime counts, per-day buckets, half-life (decayed) scores, rankings, the last reviews
-- of each product, alerts and the model's live quality; so all of it is effectively once.
--
-- Each review's contribution is kept in compact form (below), so an edit replaces it and a delete retracts it (in
-- the lifetime counts, its day's bucket and the decayed scores); a message that is neither new nor newer is a
-- re-send: counted nowhere, returned as "silent".
--
-- ARGV[1]: key prefix. ARGV[2]: JSON list of partitions:
--   {"topic", "partition",
--    "start": the offset the worker's consumer started this partition from (its committed offset), -1 unknown,
--    "tid": the input topic's id, "" unknown, "first": the batch's first offset,
--    "records": [{"o": offset, "k": state bucket, "f": state field, "op": "u"|"d", "v": version or "",
--                 "e": event time (whole seconds) or "", "p": product id, "s": sentiment, "r": rating,
--                 "m": aspect bitmask, "t": seen time (whole seconds), "x": the record as published (JSON),
--                 "i": review id, "q": the review's own stars or "", "mv": model version, "txt": text snippet,
--                 "pt": when it was predicted (whole seconds), "ps": the predicted stars or "" (else the rating
--                 rounded)}],
--    "dead": [offset, ...], "carried": [[offset, JSON], ...], "carried_silent": [[offset, "k:f"], ...],
--    "failed": [[offset, why], ...], "carried_alerts": [JSON, ...]}
--   ("carried": counted by an earlier attempt of this batch and published again now; kept in the new copy;
--    "failed": valid reviews the worker itself failed on, dead-lettered; a replay dead-letters them again).
-- ARGV[3]: JSON {"aspects": [aspect names, bit 0 first], "lock": the rebuild token this caller holds, or "",
--   "now": epoch seconds, "bucket_s", "retention_s", "half_life_s", "recent": reviews kept per product,
--   "alert_min_recent", "alert_min_delta", "alert_cooldown_s", "alerts": false to decide none (a rebuild)};
--   bucket_s and half_life_s are fixed per prefix at first use (P:meta), since stored contributions depend on them.
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
-- Counters are summed in Lua over the whole batch and written once per key at the end (HMGET + HSET), not once
-- per review: the per-review cost is the state read and write.
--
-- Returns JSON {"applied", "edits", "deletes", "skipped", "dead", "silent": {"topic:partition": [offset...]},
--               "alerts": [alert JSON...], "violations": [{"topic", "partition", "reason", "watermark", "stored"}]}.
local prefix = ARGV[1]
local batch = cjson.decode(ARGV[2])
local opts = cjson.decode(ARGV[3])
local ASPECTS = opts.aspects
local NOW = tonumber(opts.now)
local wm_key = prefix .. ':watermarks'
local tid_key = prefix .. ':topic_ids'
local totals_key = prefix .. ':totals'
local meta_key = prefix .. ':meta'
local LABELS = {n = 'negative', u = 'neutral', p = 'positive'}
local CODES = {negative = 'n', neutral = 'u', positive = 'p'}

-- 1. Checks, before any write.
local violations = {}
local lock = redis.call('HGET', meta_key, 'rebuild')
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
  return cjson.encode({applied = 0, edits = 0, deletes = 0, skipped = 0, dead = 0, silent = {}, alerts = {},
                       violations = violations})
end

-- The bucket size and half-life this prefix was started with (stored contributions depend on them).
redis.call('HSETNX', meta_key, 'bucket_s', opts.bucket_s)
redis.call('HSETNX', meta_key, 'half_life_s', opts.half_life_s)
local fixed = redis.call('HMGET', meta_key, 'bucket_s', 'half_life_s')
local BUCKET_S = tonumber(fixed[1])
local HALF_LIFE_S = tonumber(fixed[2])
local RETENTION_S = tonumber(opts.retention_s)

-- 2. Deltas, summed over the batch; written once per key by flush().
local deltas = {}     -- hash key -> field -> number
local zdeltas = {}    -- sorted-set key -> member -> number
local floats = {}     -- key .. '\0' .. field -> true for float fields
local expiries = {}   -- key -> epoch seconds
local seen_min, seen_max = {}, {}
local touched = {}    -- product -> true
local recent_new = {} -- product -> {item JSON, ...} (oldest first)
local retracted = {}  -- product -> {review id -> true}
local batch_negative = {} -- product -> {review ids} (for alerts)
local batch_complaints = {} -- product -> aspect -> {review ids}

local function add(key, field, delta, is_float)
  local d = deltas[key]
  if not d then d = {}; deltas[key] = d end
  d[field] = (d[field] or 0) + delta
  if is_float then floats[key .. '\0' .. field] = true end
end

local function zadd(key, member, delta)
  local d = zdeltas[key]
  if not d then d = {}; zdeltas[key] = d end
  d[member] = (d[member] or 0) + delta
end

local function aspects_of(mask)
  local out = {}
  for i, name in ipairs(ASPECTS) do
    if bit.band(mask, bit.lshift(1, i - 1)) ~= 0 then out[#out + 1] = name end
  end
  return out
end

-- The product's decay landmark: weights are 2^((t - t0) / half-life), t0 fixed at its first review, so a weight
-- stays finite for decades and an edit takes back exactly what it added.
local landmarks = {}
local function landmark(pid, seen)
  local t0 = landmarks[pid]
  if t0 then return t0 end
  local key = prefix .. ':product:' .. pid
  t0 = tonumber(redis.call('HGET', key, 'decay_t0') or '')
  if not t0 then
    t0 = seen
    redis.call('HSET', key, 'decay_t0', string.format('%d', t0))
  end
  landmarks[pid] = t0
  return t0
end

-- Add (sign 1) or take back (sign -1) one review's contribution everywhere it counts.
local function contribute(pid, label, rating, mask, seen, sign)
  local key = prefix .. ':product:' .. pid
  local aspects = aspects_of(mask)
  add(key, 'review_count', sign)
  add(key, 'sentiment:' .. label, sign)
  add(key, 'rating_sum', sign * rating, true)
  add(totals_key, 'reviews', sign)
  add(totals_key, 'sentiment:' .. label, sign)
  for _, a in ipairs(aspects) do
    add(key, 'aspect:' .. a, sign)
    add(key, 'aspect:' .. a .. ':' .. label, sign)
    zadd(prefix .. ':rank:aspect:' .. a, pid, sign)
    if label == 'negative' then zadd(prefix .. ':rank:complaints:' .. a, pid, sign) end
  end
  -- Its day's bucket, while the bucket is kept.
  local bucket = math.floor(seen / BUCKET_S) * BUCKET_S
  local expire_at = bucket + BUCKET_S + RETENTION_S
  if expire_at > NOW then
    local day = prefix .. ':day:' .. pid .. ':' .. string.format('%d', bucket)
    add(day, 'review_count', sign)
    add(day, 'sentiment:' .. label, sign)
    add(day, 'rating_sum', sign * rating, true)
    for _, a in ipairs(aspects) do
      add(day, 'aspect:' .. a, sign)
      if label == 'negative' then add(day, 'aspect:' .. a .. ':negative', sign) end
    end
    expiries[day] = expire_at
  end
  -- Half-life scores (forward decay).
  local w = sign * 2 ^ ((seen - landmark(pid, seen)) / HALF_LIFE_S)
  add(key, 'decay_n', w, true)
  if label == 'negative' then
    add(key, 'decay_negative', w, true)
    for _, a in ipairs(aspects) do add(key, 'decay_complaints:' .. a, w, true) end
  end
  if sign > 0 then
    if not seen_min[pid] or seen < seen_min[pid] then seen_min[pid] = seen end
    if not seen_max[pid] or seen > seen_max[pid] then seen_max[pid] = seen end
  end
  touched[pid] = true
end

-- The model's live quality and prediction mix, per model version and processing day (never retracted: they
-- describe predictions made, and feed nothing back).
local function observe(r)
  local day = math.floor(r.pt / BUCKET_S) * BUCKET_S
  local key = prefix .. ':quality:' .. r.mv .. ':' .. string.format('%d', day)
  add(key, 'predictions', 1)
  add(key, 'pred:' .. r.s, 1)
  for _, a in ipairs(aspects_of(r.m)) do add(key, 'aspect:' .. a, 1) end
  if r.q ~= '' then
    local stars = tonumber(r.q)
    local truth = stars <= 2 and 'negative' or (stars == 3 and 'neutral' or 'positive')
    local predicted_stars = r.ps ~= '' and tonumber(r.ps) or math.max(1, math.min(5, math.floor(r.r + 0.5)))
    add(key, 'n', 1)
    add(key, 'abs_err_sum', math.abs(r.r - stars), true)
    if predicted_stars == stars then add(key, 'star_hits', 1) end
    if truth == r.s then add(key, 'sentiment_hits', 1) end
    add(key, 'confusion:' .. truth .. ':' .. r.s, 1)
  end
  expiries[key] = day + BUCKET_S + RETENTION_S
  redis.call('SADD', prefix .. ':quality:versions', r.mv)
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

local function take_back(pid, old_f)
  contribute(pid, LABELS[string.sub(old_f[1], 1, 1)], tonumber(string.sub(old_f[1], 2)), tonumber(old_f[2]),
             tonumber(old_f[3]), -1)
end

local applied, edits, deletes, skipped, dead = 0, 0, 0, 0, 0
local silent_json = {}
local copies = {}

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
          if counted then take_back(r.p, old_f) end
          redis.call('HSET', state_key, r.f, 'D|' .. r.v .. '|' .. r.e)
          add(totals_key, 'deletes', 1)
          deletes = deletes + 1
          local gone = retracted[r.p] or {}
          gone[r.i] = true
          retracted[r.p] = gone
          touched[r.p] = true
        end
      else
        take = old_f == nil or newer(r.v, r.e, old_v, old_e)
        if take then
          if counted then
            take_back(r.p, old_f)
            add(totals_key, 'edits', 1)
            edits = edits + 1
          else
            applied = applied + 1
          end
          contribute(r.p, r.s, r.r, r.m, r.t, 1)
          observe(r)
          redis.call('HSET', state_key, r.f,
            CODES[r.s] .. r.r .. '|' .. string.format('%d', r.m) .. '|' .. string.format('%d', r.t) .. '|'
            .. r.v .. '|' .. r.e)
          local items = recent_new[r.p] or {}
          items[#items + 1] = cjson.encode({review_id = r.i, text = r.txt, sentiment = r.s, rating = r.r,
                                            aspects = aspects_of(r.m), t = r.t, version = r.v})
          recent_new[r.p] = items
          if r.s == 'negative' then
            local ids = batch_negative[r.p] or {}
            ids[#ids + 1] = r.i
            batch_negative[r.p] = ids
            for _, a in ipairs(aspects_of(r.m)) do
              local by = batch_complaints[r.p] or {}
              local ids_a = by[a] or {}
              ids_a[#ids_a + 1] = r.i
              by[a] = ids_a
              batch_complaints[r.p] = by
            end
          end
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
    add(totals_key, 'resends', #part_silent)
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
  if part_dead > 0 then add(totals_key, 'dead_letters', part_dead) end
  dead = dead + part_dead
  if part_new + part_dead > 0 then add(totals_key, 'messages', part_new + part_dead) end
  if high > wm then redis.call('HSET', wm_key, field, string.format('%d', high)) end
  if part.tid ~= '' then redis.call('HSETNX', tid_key, part.topic, part.tid) end
  if any_new then
    copies[#copies + 1] = {key = prefix .. ':inflight:' .. field, first = part.first, published = published,
                           silent = silent, failed = failed, carried_alerts = part.carried_alerts}
  end
end

-- 4. Write the summed deltas: one HMGET + HSET per hash, one ZINCRBY per sorted-set member.
local function fmt(value, is_float)
  if is_float then return string.format('%.17g', value) end
  return string.format('%d', value)
end

for key, members in pairs(zdeltas) do
  for member, delta in pairs(members) do
    if delta ~= 0 and tonumber(redis.call('ZINCRBY', key, delta, member)) <= 0 then
      redis.call('ZREM', key, member)
    end
  end
end
for key, fields in pairs(deltas) do
  local names = {}
  for name, _ in pairs(fields) do names[#names + 1] = name end
  local current = redis.call('HMGET', key, unpack(names))
  local pairs_out = {}
  for j, name in ipairs(names) do
    local is_float = floats[key .. '\0' .. name]
    pairs_out[#pairs_out + 1] = name
    pairs_out[#pairs_out + 1] = fmt((tonumber(current[j]) or 0) + fields[name], is_float)
  end
  redis.call('HSET', key, unpack(pairs_out))
  if expiries[key] then redis.call('EXPIREAT', key, expiries[key]) end
end

-- 5. Per product: first/last seen, rankings (lifetime and recent), the last reviews, the product index; a product
-- with every review retracted leaves them all.
local RANKINGS = {'review_count', 'negative_share', 'positive_share', 'rating_mean', 'recent_negative_share'}
local keep_recent = tonumber(opts.recent)
local new_products = {}
for pid, _ in pairs(touched) do
  local key = prefix .. ':product:' .. pid
  local v = redis.call('HMGET', key, 'review_count', 'sentiment:negative', 'sentiment:positive', 'rating_sum',
                       'first_seen', 'last_seen', 'decay_n', 'decay_negative')
  local n = tonumber(v[1] or '0')
  local recent_key = prefix .. ':recent:' .. pid
  if n <= 0 then
    redis.call('DEL', key, recent_key)
    for _, by in ipairs(RANKINGS) do redis.call('ZREM', prefix .. ':rank:' .. by, pid) end
    for _, a in ipairs(ASPECTS) do redis.call('ZREM', prefix .. ':rank:recent_complaints:' .. a, pid) end
    redis.call('ZREM', prefix .. ':products', pid)
  else
    if seen_min[pid] and (not v[5] or seen_min[pid] < tonumber(v[5])) then
      redis.call('HSET', key, 'first_seen', seen_min[pid])
    end
    if seen_max[pid] and (not v[6] or seen_max[pid] > tonumber(v[6])) then
      redis.call('HSET', key, 'last_seen', seen_max[pid])
    end
    redis.call('ZADD', prefix .. ':rank:review_count', n, pid)
    redis.call('ZADD', prefix .. ':rank:negative_share', tonumber(v[2] or '0') / n, pid)
    redis.call('ZADD', prefix .. ':rank:positive_share', tonumber(v[3] or '0') / n, pid)
    redis.call('ZADD', prefix .. ':rank:rating_mean', tonumber(v[4]) / n, pid)
    local dn = tonumber(v[7] or '0')
    if dn > 0 then
      redis.call('ZADD', prefix .. ':rank:recent_negative_share', math.max(0, tonumber(v[8] or '0') / dn), pid)
      local names = {}
      for j, a in ipairs(ASPECTS) do names[j] = 'decay_complaints:' .. a end
      local dc = redis.call('HMGET', key, unpack(names))
      for j, a in ipairs(ASPECTS) do
        local c = tonumber(dc[j] or '0')
        if c > 1e-12 * dn then
          redis.call('ZADD', prefix .. ':rank:recent_complaints:' .. a, c / dn, pid)
        elseif dc[j] then
          redis.call('ZREM', prefix .. ':rank:recent_complaints:' .. a, pid)
        end
      end
    end
    new_products[#new_products + 1] = 0
    new_products[#new_products + 1] = pid
    -- The last reviews: drop the retracted ones, push the new ones, keep a few.
    if retracted[pid] then
      local kept = {}
      for _, item in ipairs(redis.call('LRANGE', recent_key, 0, -1)) do
        if not retracted[pid][cjson.decode(item).review_id] then kept[#kept + 1] = item end
      end
      redis.call('DEL', recent_key)
      for j = #kept, 1, -1 do redis.call('LPUSH', recent_key, kept[j]) end
    end
    if recent_new[pid] then
      redis.call('LPUSH', recent_key, unpack(recent_new[pid]))
      redis.call('LTRIM', recent_key, 0, keep_recent - 1)
    end
  end
end
if #new_products > 0 then redis.call('ZADD', prefix .. ':products', 'NX', unpack(new_products)) end

-- 6. Alerts: a product's recent negative share, or an aspect's recent complaint rate, past its lifetime share by
-- alert_min_delta with at least alert_min_recent recent reviews (decayed count at now); one per product, kind and
-- cool-down.
local alerts = {}
local function alert(pid, kind, aspect, lifetime, recent, effective, ids)
  if recent - lifetime < tonumber(opts.alert_min_delta) or effective < tonumber(opts.alert_min_recent) then return end
  local gate = prefix .. ':alerted:' .. pid .. ':' .. kind
  if not redis.call('SET', gate, string.format('%d', NOW), 'NX', 'EX', tonumber(opts.alert_cooldown_s)) then return end
  local body = cjson.encode({schema_version = 1, product_id = pid, kind = kind, aspect = aspect,
                             from = lifetime, to = recent, recent_reviews = effective, half_life_s = HALF_LIFE_S,
                             at = NOW, review_ids = ids})
  alerts[#alerts + 1] = body
  redis.call('HINCRBY', totals_key, 'alerts', 1)
  redis.call('LPUSH', prefix .. ':alerts', body)
  redis.call('LTRIM', prefix .. ':alerts', 0, 99)
  redis.call('LPUSH', prefix .. ':alerts:' .. pid, body)
  redis.call('LTRIM', prefix .. ':alerts:' .. pid, 0, 9)
end
for pid, ids in pairs(opts.alerts and batch_negative or {}) do
  local key = prefix .. ':product:' .. pid
  local v = redis.call('HMGET', key, 'review_count', 'sentiment:negative', 'decay_n', 'decay_negative', 'decay_t0')
  local n, dn = tonumber(v[1] or '0'), tonumber(v[3] or '0')
  if n > 0 and dn > 0 then
    local effective = dn * 2 ^ ((tonumber(v[5]) - NOW) / HALF_LIFE_S)
    alert(pid, 'negative_share', cjson.null, tonumber(v[2] or '0') / n, tonumber(v[4] or '0') / dn, effective, ids)
    for a, ids_a in pairs(batch_complaints[pid] or {}) do
      local c = redis.call('HMGET', key, 'aspect:' .. a .. ':negative', 'decay_complaints:' .. a)
      alert(pid, 'complaints:' .. a, a, tonumber(c[1] or '0') / n, tonumber(c[2] or '0') / dn, effective, ids_a)
    end
  end
end

-- 7. The copies of each partition's batch, with this batch's alerts (on the first partition that has a copy), so a
-- replay publishes exactly what was decided here.
for j, c in ipairs(copies) do
  local carried = {}
  for _, body in ipairs(c.carried_alerts) do carried[#carried + 1] = body end
  if j == 1 then for _, body in ipairs(alerts) do carried[#carried + 1] = body end end
  redis.call('SET', c.key, '{"first":' .. string.format('%d', c.first) .. ',"records":{' .. table.concat(c.published, ',')
    .. '},"silent":{' .. table.concat(c.silent, ',') .. '},"failed":{' .. table.concat(c.failed, ',')
    .. '},"alerts":[' .. table.concat(carried, ',') .. ']}')
end

return '{"applied":' .. applied .. ',"edits":' .. edits .. ',"deletes":' .. deletes .. ',"skipped":' .. skipped
  .. ',"dead":' .. dead .. ',"silent":{' .. table.concat(silent_json, ',') .. '},"alerts":['
  .. table.concat(alerts, ',') .. '],"violations":[]}'
