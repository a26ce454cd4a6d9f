-- Unique IDWise deliveries: a fresh eventId and journey per request.
local counter = 0
local prefix = tostring(os.time()) .. "-" .. tostring(math.random(1000000))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KYCFLOW_IDWISE_TOKEN")
request = function()
  counter = counter + 1
  local id = prefix .. "-" .. counter
  local body = '{"event":"Finished Journey","body":{"eventId":"' .. id .. '","journeyId":"j-' .. id ..
    '","referenceNo":"customer-42","systemDecision":"Complete","manualDecision":null,"finalDecision":"Complete"}}'
  return wrk.format(nil, "/webhooks/idwise", nil, body)
end
