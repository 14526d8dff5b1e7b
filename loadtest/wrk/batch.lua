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

-- Only answered, accepted batches count towards the rates: wrk counts responses with a
-- status >= 400 (and socket errors) apart, so a refused run (a key missing, a batch over
-- --max-batch) shows 0 messages/s and its errors, not a made-up throughput.
function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local refused = summary.errors.status
  local failed = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  local accepted = summary.requests - refused - failed
  if accepted < 0 then accepted = 0 end
  io.write(string.format("batches/s %.0f, messages/s %.0f, error responses %d, socket errors %d\n",
    accepted / seconds,
    accepted / seconds * items,
    refused,
    failed))
end
