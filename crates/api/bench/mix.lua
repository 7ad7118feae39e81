-- wrk script: the reference load mix of the challenge, 220 debits : 110 credits : 10
-- statements, on random accounts 1..5, values 1..10000 and 10-character alphanumeric
-- descriptions. Usage (keep-alive, then one connection per request):
--   wrk -t2 -c64 -d30s --latency -s crates/api/bench/mix.lua http://127.0.0.1:9999
--   wrk -t2 -c64 -d30s --latency -H 'Connection: close' -s crates/api/bench/mix.lua http://127.0.0.1:9999
-- Debits beyond the limit answer 422 by design; wrk counts them as non-2xx responses.

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
