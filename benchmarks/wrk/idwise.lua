-- Unique IDWise deliveries: a fresh eventId per request.
-- KYCFLOW_BENCH_EVENTS_PER_JOURNEY (default 1) webhooks share each journey: 1 is the worst
-- case for encryption at rest (every webhook a new subject, so a new data key); 4 is a
-- journey as IDWise sends it: two finished steps, the automatic result, the manual review.
local counter = 0
local prefix = tostring(os.time()) .. "-" .. tostring(math.random(1000000))
local per_journey = tonumber(os.getenv("KYCFLOW_BENCH_EVENTS_PER_JOURNEY") or "1") or 1
local steps = {
  '"event":"Finished Step","body":{"stepId":"document",',
  '"event":"Finished Step","body":{"stepId":"selfie",',
  '"event":"Finished Journey","body":{"systemDecision":"Complete","manualDecision":null,"finalDecision":"Complete",',
  '"event":"Manually Reviewed","body":{"manualDecision":"Approved","finalDecision":"Approved",',
}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KYCFLOW_IDWISE_TOKEN")
request = function()
  counter = counter + 1
  local id = prefix .. "-" .. counter
  local body
  if per_journey <= 1 then
    body = '{"event":"Finished Journey","body":{"eventId":"' .. id .. '","journeyId":"j-' .. id ..
      '","referenceNo":"customer-42","systemDecision":"Complete","manualDecision":null,"finalDecision":"Complete"}}'
  else
    local journey = prefix .. "-j" .. math.floor((counter - 1) / per_journey)
    local step = steps[(counter - 1) % per_journey % #steps + 1]
    body = '{' .. step .. '"eventId":"' .. id .. '","journeyId":"' .. journey ..
      '","referenceNo":"customer-42"}}'
  end
  return wrk.format(nil, "/webhooks/idwise", nil, body)
end
