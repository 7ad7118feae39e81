-- wrk script: the reference load mix of the challenge, 220 debits : 110 credits : 10
-- statements, on random accounts 1..5, values 1..10000 and 10-character alphanumeric
-- descriptions. Usage (keep-alive, then one connection per request):
--   wrk -t1 -c32 -d10s -s bench/mix.lua http://127.0.0.1:9999
--   wrk -t1 -c32 -d10s -H 'Connection: close' -s bench/mix.lua http://127.0.0.1:9999
-- Debits beyond the limit answer 422 by design, so wrk's own "Non-2xx" count is not an error
-- count: this script counts 200 and 422 as expected and everything else as unexpected, and
-- prints one machine-readable "mix:" line at the end (latencies in microseconds), which
-- bench/run.sh reads.

local alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("id", counter)
   table.insert(threads, thread)
end

function init(args)
   math.randomseed(os.time() * 1000 + id)
   expected = 0
   unexpected = 0
end

local function description()
   local chars = {}
   for i = 1, 10 do
      local n = math.random(1, #alphabet)
      chars[i] = alphabet:sub(n, n)
   end
   return table.concat(chars)
end

local headers = { ["Content-Type"] = "application/json" }

function request()
   local account = math.random(1, 5)
   local pick = math.random(1, 340)
   if pick <= 10 then
      return wrk.format("GET", "/clientes/" .. account .. "/extrato")
   end
   local kind = "d"
   if pick <= 120 then
      kind = "c"
   end
   local body = '{"valor": ' .. math.random(1, 10000) .. ', "tipo": "' .. kind ..
      '", "descricao": "' .. description() .. '"}'
   return wrk.format("POST", "/clientes/" .. account .. "/transacoes", headers, body)
end

function response(status, headers, body)
   if status == 200 or status == 422 then
      expected = expected + 1
   else
      unexpected = unexpected + 1
   end
end

function done(summary, latency, requests)
   local ok, bad = 0, 0
   for _, thread in ipairs(threads) do
      ok = ok + thread:get("expected")
      bad = bad + thread:get("unexpected")
   end
   local e = summary.errors
   io.write(string.format(
      "mix: requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d expected=%d unexpected=%d " ..
      "connect=%d read=%d write=%d timeout=%d\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      latency.max, ok, bad, e.connect, e.read, e.write, e.timeout))
end
