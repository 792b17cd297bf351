-- wrk script: POST /v1/chat/completions with a unique prompt per request.
--
--   wrk -t1 -c64 -d10s -s bench/wrk/chat.lua http://127.0.0.1:PORT/v1/chat/completions
--   wrk ... -s bench/wrk/chat.lua URL -- stream            (SSE streaming requests)
--   wrk ... -s bench/wrk/chat.lua URL -- nonce=run42       (prompt prefix, see below)
--   wrk ... -s bench/wrk/chat.lua URL -- fixed             (one prompt for all: cache hits)
--   wrk ... -s bench/wrk/chat.lua URL -- keys=256 nonce=X  (cycle over 256 prompts,
--                                                           "Benchmark prompt X-kI: say hello.")
--
-- Every request carries a different prompt (nonce + thread id + counter), so a gateway
-- cache never hits; pass a new nonce per run (bench/run.py does) or the run's start time
-- is used. At the end one line is printed: "WRK_JSON {...}" with the summary, which
-- bench/run.py parses.

local threads = {}
local thread_counter = 0

function setup(thread)
  thread_counter = thread_counter + 1
  thread:set("tid", thread_counter)
  table.insert(threads, thread)
end

local counter = 0
local stream = false
local fixed = false
local keys = 0
local nonce = nil
local path = nil
local headers = {
  ["Content-Type"] = "application/json",
  ["Authorization"] = "Bearer sk-bench",
}

function init(args)
  for _, a in ipairs(args) do
    if a == "stream" then
      stream = true
    elseif a == "fixed" then
      fixed = true
    elseif string.sub(a, 1, 5) == "keys=" then
      keys = tonumber(string.sub(a, 6))
    elseif string.sub(a, 1, 6) == "nonce=" then
      nonce = string.sub(a, 7)
    end
  end
  if nonce == nil then
    nonce = tostring(os.time())
  end
  path = wrk.path
end

function request()
  local prompt
  if fixed then
    prompt = "Benchmark prompt " .. nonce .. ": say hello."
  elseif keys > 0 then
    prompt = string.format("Benchmark prompt %s-k%d: say hello.", nonce, counter % keys)
    counter = counter + 1
  else
    counter = counter + 1
    prompt = string.format("Benchmark prompt %s-%d-%d: say hello.", nonce, tid, counter)
  end
  local body
  if stream then
    body = '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},'
      .. '"messages":[{"role":"user","content":"' .. prompt .. '"}]}'
  else
    body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"' .. prompt .. '"}]}'
  end
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
