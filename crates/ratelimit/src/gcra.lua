-- GCRA for one key, computed as governor computes it (see the README).
--
-- KEYS[1]  the bucket
-- ARGV[1]  T: the emission interval in nanoseconds, 60 s / N rounded down
--          (the caller takes it from governor, so both agree to the nanosecond)
-- ARGV[2]  N: the budget, which is also the burst
--
-- The key holds the theoretical arrival time (TAT) on the Redis clock as
-- "<seconds>.<nanoseconds>" and expires when the bucket is full again: a
-- missing key is a full bucket. Redis' clock, not the callers', so that the
-- instances' clocks do not matter.
--
-- Returns {1, remaining, TAT - now} when allowed (the request is counted),
-- {0, 0, wait} when refused (nothing is written); durations in nanoseconds.
--
-- Times are offsets from now in nanoseconds: they stay below 2^53 and are
-- exact in Lua's doubles, where an absolute time in nanoseconds would not be.

if redis.replicate_commands then
  redis.replicate_commands() -- Redis < 5: replicate the write, not the script that reads TIME
end

local t = tonumber(ARGV[1])
local tau = t * (tonumber(ARGV[2]) - 1) -- how far the TAT may run ahead of now
local clock = redis.call('TIME')
local now_s = tonumber(clock[1])
local now_ns = tonumber(clock[2]) * 1000

local ahead = 0 -- TAT - now
local stored = redis.call('GET', KEYS[1])
if stored then
  local s, ns = string.match(stored, '^(%d+)%.(%d+)$')
  if s then
    ahead = (tonumber(s) - now_s) * 1000000000 + (tonumber(ns) - now_ns)
  end
end
-- Never further than one full bucket ahead, even if the Redis clock went back.
if ahead > tau + t then
  ahead = tau + t
end

if ahead > tau then
  return {0, 0, ahead - tau}
end
if ahead < 0 then
  ahead = 0
end

local tat = ahead + t
local room = tau + t - tat
local remaining = (room - room % t) / t
local at = now_ns + tat
local at_ns = at % 1000000000
local at_s = now_s + (at - at_ns) / 1000000000
redis.call('SET', KEYS[1], string.format('%d.%09d', at_s, at_ns), 'PX', math.ceil(tat / 1000000))
return {1, remaining, tat}
