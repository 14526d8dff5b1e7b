-- wrk script for POST /api/v2/batch: every request carries one batch of ITEMS pushes
-- (100 by default, ~9.3 KB) to users batch-user-0 .. batch-user-(ITEMS-1).
--
--   wrk -t1 -c4 -d8s -s loadtest/wrk/batch.lua http://127.0.0.1:8081/api/v2/batch
--
-- Messages accepted per second = requests per second x ITEMS. Set ITEMS in the
-- environment to change the batch size (at most the gateway's --max-batch).
local items = tonumber(os.getenv("ITEMS") or "100")
local pushes = {}
for i = 0, items - 1 do
  pushes[#pushes + 1] = string.format(
    '{"userId": "batch-user-%d", "event": "alarm", "message": "CPU > 95%% on db-3 for 5 minutes"}', i)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"pushes": [' .. table.concat(pushes, ", ") .. ']}'

-- Responses with a status >= 400 are counted by wrk, so a refused run does not pass for
-- throughput.
function done(summary, latency, requests)
  io.write(string.format("batches/s %.0f, messages/s %.0f, error responses %d\n",
    summary.requests / (summary.duration / 1e6),
    summary.requests / (summary.duration / 1e6) * items,
    summary.errors.status))
end
