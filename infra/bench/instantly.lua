-- wrk script: unique Instantly replies (native shape), authenticated with the
-- shared-secret header. Each thread numbers its own requests.
local secret = os.getenv("HMAC_SHARED_SECRET_INSTANTLY") or "bench-secret"
local run = os.getenv("BENCH_RUN_ID") or tostring(os.time())
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  local id = run .. "-" .. tostring(tid) .. "-" .. tostring(counter)
  local body = '{"event_type":"reply_received","timestamp":"2026-11-20T14:03:00Z",'
    .. '"campaign_id":"bench","campaign_name":"Bench","lead_email":"lead-' .. id .. '@bench.example.com",'
    .. '"email_account":"sdr@ourco.io","reply_text":"Thanks for the note. I am interested, can we talk next week?",'
    .. '"reply_subject":"Re: hello","email_id":"bench-' .. id .. '","first_name":"Bench","last_name":"Lead"}'
  return wrk.format("POST", "/crm/webhooks/instantly/reply",
    { ["Content-Type"] = "application/json", ["X-Webhook-Secret"] = secret }, body)
end

function done(summary, latency, requests)
  io.write(string.format("BENCH requests=%d non2xx=%d errors=%d p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
