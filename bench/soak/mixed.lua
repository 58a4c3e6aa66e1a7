-- wrk script for bench/soak.sh: every other request streamed, each answer's status counted,
-- the counts summed over the threads at the end (wrk prints them as `ok=N other=N`).
local threads = {}
local counter = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, other = 0, 0
  local key, model = args[1], args[2]
  local headers = {["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json"}
  local message = '"messages":[{"role":"user","content":"Say hello."}]'
  whole = wrk.format("POST", "/v1/chat/completions", headers, '{"model":"' .. model .. '",' .. message .. '}')
  streamed = wrk.format("POST", "/v1/chat/completions", headers,
    '{"model":"' .. model .. '",' .. message .. ',"stream":true,"stream_options":{"include_usage":true}}')
end

function request()
  counter = counter + 1
  if counter % 2 == 0 then return streamed end
  return whole
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local total_ok, total_other = 0, 0
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_other = total_other + thread:get("other")
  end
  io.write(string.format("ok=%d other=%d errors=%d\n", total_ok, total_other,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
