-- wrk script for resolveload: GET /resolve (or the target named by the
-- second script argument, e.g. /resolve?role=member) with a random cookie
-- from the file named by the first script argument, one line per cookie. The
-- requests are built once per thread in init, so that each request costs
-- wrk one table lookup and one math.random.
local reqs = {}
local threads = 0

-- RESOLVELOAD_THINK_MS > 0 makes each connection pause that long between
-- a response and its next request. wrk decides whether to call delay()
-- before init runs, so this is read from the environment, not args.
local think = tonumber(os.getenv("RESOLVELOAD_THINK_MS") or "0") or 0
if think > 0 then
  function delay()
    return think
  end
end

function setup(thread)
  threads = threads + 1
  thread:set("seed", threads)
end

function init(args)
  math.randomseed(os.time() * 100 + seed)
  local target = args[2] or "/resolve"
  for line in io.lines(args[1]) do
    if line ~= "" then
      reqs[#reqs + 1] = wrk.format("GET", target, {
        ["Cookie"] = line,
        ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
      })
    end
  end
end

function request()
  return reqs[math.random(#reqs)]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d mean_us=%.1f\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
