-- wrk script for hookwise-bench: POSTs pre-signed 2 KiB GitHub pushes, each request with a
-- delivery id no other request of the run has, and prints the results as one JSON line.
--
--   wrk -s signed.lua URL -- REQUESTS_FILE RUN_ID [RATE SEND_SECONDS]
--
-- REQUESTS_FILE has one request per line: `X-Hub-Signature-256 value <TAB> JSON body`. GitHub
-- signs the body only, so a body and its signature can be sent again under a new delivery id.
--
-- Without RATE each connection sends its next request as soon as the last is answered (the
-- most the server takes). With RATE (requests a second, per thread) requests start on a fixed
-- schedule, one every 1/RATE seconds, on whichever connection is free; a late schedule is not
-- caught up in a burst. No request starts after SEND_SECONDS, so that every request of the
-- run is answered before wrk stops at its --duration (a request still open then would be
-- neither answered nor an error: uncounted).

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } hookwise_timespec;
  int clock_gettime(int clock, hookwise_timespec *now);
]]
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("hookwise_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1e3 + tonumber(timespec.tv_nsec) / 1e6
end

local next_thread = 0
local threads = {}

function setup(thread)
  thread:set("thread_index", next_thread)
  next_thread = next_thread + 1
  threads[#threads + 1] = thread
end

-- Paced runs only (defined by init, so that wrk, which asks after init, uses it only then):
-- milliseconds until this thread's next free slot.
local function paced_delay()
  local now = now_ms()
  if now >= stop_at then
    -- Past the sending window: wrk ends the run before this comes due.
    return 3600 * 1000
  end
  slot = math.max(slot + interval_ms, now)
  return math.floor(slot - now)
end

function init(args)
  local file, run = args[1], args[2]
  signatures, bodies = {}, {}
  for line in io.lines(file) do
    local tab = line:find("\t", 1, true)
    signatures[#signatures + 1] = line:sub(1, tab - 1)
    bodies[#bodies + 1] = line:sub(tab + 1)
  end
  delivery_prefix = run .. "-" .. thread_index .. "-"
  sent = 0
  if args[3] then
    interval_ms = 1000 / tonumber(args[3])
    slot = now_ms()
    stop_at = slot + tonumber(args[4]) * 1000
    delay = paced_delay
    -- Answers that were not 2xx, by status, to say why requests failed.
    refused = {}
    response = function(status, headers, body)
      if status >= 300 then
        refused[status] = (refused[status] or 0) + 1
      end
    end
  end
  headers = {
    ["Content-Type"] = "application/json",
    ["User-Agent"] = "GitHub-Hookshot/hookwise-bench",
    ["X-GitHub-Event"] = "push",
  }
end

function request()
  sent = sent + 1
  local i = sent % #bodies + 1
  headers["X-GitHub-Delivery"] = delivery_prefix .. sent
  headers["X-Hub-Signature-256"] = signatures[i]
  return wrk.format("POST", nil, headers, bodies[i])
end

function done(summary, latency, requests)
  local e = summary.errors
  -- Before the run wrk builds one request of the first thread to check it
  -- (script_verify_request); that one is never sent.
  local started = -1
  local statuses = {}
  for _, thread in ipairs(threads) do
    started = started + thread:get("sent")
    for status, n in pairs(thread:get("refused") or {}) do
      statuses[#statuses + 1] = string.format('"%d":%d', status, n)
    end
  end
  io.write(string.format(
    'WRK_JSON {"requests":%d,"started":%d,"duration_us":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"statuses":{%s},"timeout":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d}\n',
    summary.requests, started, summary.duration, e.connect, e.read, e.write, e.status,
    table.concat(statuses, ","),
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
