-- The seed's Locust mix (shared/seed, 压力测试): uid U1..U1000, cid of {123,456,789},
-- src of {0,100,200,300}, tag of {A,B,C,"A,B","B,C",""}, type image_click, to example.com.
-- A browser user agent: command-line clients are bots (SPEC §4a).

local cids = { 123, 456, 789 }
local srcs = { 0, 100, 200, 300 }
local tags = { "A", "B", "C", "A%2CB", "B%2CC", "" }

wrk.method = "GET"
wrk.headers["User-Agent"] =
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Line/13.20.0"

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

function init(args)
  math.randomseed(os.time() * 1000 + (seed or 0))
end

-- scripts/bench.sh --paced: wait this long before each request on each connection.
local pace = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if pace then
  delay = function()
    return pace
  end
end

request = function()
  local path = string.format(
    "/__track?uid=U%d&cid=%d&src=%d&type=image_click&to=https%%3A%%2F%%2Fexample.com&tag=%s",
    math.random(1, 1000),
    cids[math.random(#cids)],
    srcs[math.random(#srcs)],
    tags[math.random(#tags)]
  )
  return wrk.format(nil, path)
end
