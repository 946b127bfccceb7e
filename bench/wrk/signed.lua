-- wrk script for hookwise-bench: POSTs pre-signed 2 KiB GitHub pushes, each request with a
-- delivery id no other request of the run has, and prints the results as one JSON line.
--
--   wrk -s signed.lua URL -- REQUESTS_FILE RUN_ID
--
-- REQUESTS_FILE has one request per line: `X-Hub-Signature-256 value <TAB> JSON body`. GitHub
-- signs the body only, so a body and its signature can be sent again under a new delivery id.

local next_thread = 0

function setup(thread)
  thread:set("thread_index", next_thread)
  next_thread = next_thread + 1
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
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
