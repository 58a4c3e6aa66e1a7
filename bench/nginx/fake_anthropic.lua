-- A fake Anthropic Messages API for Portico's benchmark, run inside nginx (ngx_lua).
-- The same answer as the shared fake OpenAI upstream (the same words and token
-- counts), in Anthropic's wire format, built once at start-up, so the bench
-- compares what Portico's translation costs against its OpenAI pass-through.
local M = {}

local WORDS = {}
for w in ("Benchmarks measure what a gateway adds: parse, authenticate, route, "
    .. "forward, relay and account, all without waiting on a model."):gmatch("%S+") do
  WORDS[#WORDS + 1] = w
end
local ID = "msg_bench00000000000000000000"

M.MESSAGE = '{"id":"' .. ID .. '","type":"message","role":"assistant","model":"bench-claude",'
  .. '"content":[{"type":"text","text":"' .. table.concat(WORDS, " ") .. '"}],'
  .. '"stop_reason":"end_turn","stop_sequence":null,'
  .. '"usage":{"input_tokens":24,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,'
  .. '"output_tokens":' .. #WORDS .. '}}'

local function event(name, data)
  return 'event: ' .. name .. '\ndata: ' .. data .. '\n\n'
end

-- message_start, a text block with one delta per word, message_delta with the
-- stop reason and output tokens, message_stop: one HTTP chunk per event.
local EVENTS = {
  event("message_start", '{"type":"message_start","message":{"id":"' .. ID .. '","type":"message",'
    .. '"role":"assistant","model":"bench-claude","content":[],"stop_reason":null,"stop_sequence":null,'
    .. '"usage":{"input_tokens":24,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,'
    .. '"output_tokens":1}}}'),
  event("content_block_start", '{"type":"content_block_start","index":0,'
    .. '"content_block":{"type":"text","text":""}}'),
}
for i, w in ipairs(WORDS) do
  EVENTS[#EVENTS + 1] = event("content_block_delta", '{"type":"content_block_delta","index":0,'
    .. '"delta":{"type":"text_delta","text":"' .. (i > 1 and " " or "") .. w .. '"}}')
end
EVENTS[#EVENTS + 1] = event("content_block_stop", '{"type":"content_block_stop","index":0}')
EVENTS[#EVENTS + 1] = event("message_delta", '{"type":"message_delta","delta":{"stop_reason":"end_turn",'
  .. '"stop_sequence":null},"usage":{"output_tokens":' .. #WORDS .. '}}')
EVENTS[#EVENTS + 1] = event("message_stop", '{"type":"message_stop"}')

function M.messages()
  ngx.req.read_body()
  local body = ngx.req.get_body_data() or ""
  if not body:find('"stream"%s*:%s*true') then
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Content-Length"] = #M.MESSAGE
    ngx.print(M.MESSAGE)
    return
  end
  ngx.header["Content-Type"] = "text/event-stream; charset=utf-8"
  ngx.header["Cache-Control"] = "no-cache"
  for i = 1, #EVENTS do
    ngx.print(EVENTS[i])
  end
end

return M
