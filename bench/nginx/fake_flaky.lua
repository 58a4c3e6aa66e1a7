-- A flaky fake OpenAI upstream for Portico's benchmark, run inside nginx (ngx_lua).
-- One chat request in FAIL_EVERY fails with a 500 and OpenAI's error body; every
-- other one gets exactly the answer of the shared fast upstream (fake_openai.lua,
-- required from the same prefix), whole or streamed. The count is per worker and
-- flaky.conf runs one, so with FAIL_EVERY = 2 answers and failures alternate,
-- the first request answering: the same run fails the same requests.
local fast = require 'fake_openai'
local M = {}

M.FAIL_EVERY = 2

M.ERROR = '{"error":{"message":"The flaky fake upstream failed this request.",'
  .. '"type":"server_error","param":null,"code":null}}'

local served = 0

function M.chat()
  served = served + 1
  if served % M.FAIL_EVERY ~= 0 then
    fast.chat()
    return
  end
  -- Read and drop the body, so the connection stays usable for the next request.
  ngx.req.discard_body()
  ngx.status = 500
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = #M.ERROR
  ngx.print(M.ERROR)
end

return M
