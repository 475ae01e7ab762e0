-- wrk script shared by every HTTP scenario; configured through the environment so that the
-- command line (and so the load) is identical for every peer.
--   WRK_METHOD        GET (default) or POST
--   WRK_BODY_BYTES    request body size for uploads (0 = no body)
--   WRK_CONN_RATE     requests/s per connection (0 = as fast as possible). The pause before each
--                     request is drawn from an exponential distribution (Poisson arrivals):
--                     equal pauses would keep all connections in lock-step and turn a "fixed
--                     rate" into bursts of one request per connection. wrk's delay() takes
--                     whole milliseconds, so the remainder is carried over to keep the mean exact
-- done() prints one line "JSON {...}" with the figures, including p99.9 (wrk --latency has no
-- p99.9).

local method = os.getenv("WRK_METHOD") or "GET"
local body_bytes = tonumber(os.getenv("WRK_BODY_BYTES") or "0")
local conn_rate = tonumber(os.getenv("WRK_CONN_RATE") or "0")

wrk.method = method
if body_bytes > 0 then
  wrk.body = string.rep("x", body_bytes)
  wrk.headers["Content-Type"] = "application/octet-stream"
end

local interval_ms = 0
if conn_rate > 0 then interval_ms = 1000 / conn_rate end
local carry = 0

if interval_ms > 0 then
  math.randomseed(os.time())
  function delay()
    carry = carry - math.log(1 - math.random()) * interval_ms
    local d = math.floor(carry)
    carry = carry - d
    return d
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"p999_us":%d,"max_us":%d,"mean_us":%.1f,"body_bytes":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean, body_bytes))
end
