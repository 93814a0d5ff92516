-- Argo CD health for AwsConnector, AccessGrant, PermissionSet, IdentityCenterUser,
-- IdentityCenterGroup and IamUser (awsaccess.io): the Ready condition, once the operator has
-- observed the current generation. The same decision as src/api/health.rs, and
-- tested against the same fixtures.
local hs = {}
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation == nil or observed == nil or observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation or "")
  return hs
end
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    local reason = condition.reason or ""
    local message = condition.message or ""
    if condition.status == "True" then
      hs.status = "Healthy"
      hs.message = message
      return hs
    end
    if reason == "Pending" or reason == "SyncPending" or reason == "Provisioning"
        or reason == "PermissionSetPending" or reason == "IdentityPending" then
      hs.status = "Progressing"
      hs.message = message
      return hs
    end
    if condition.status == "False" then
      hs.status = "Degraded"
      hs.message = reason .. ": " .. message
      return hs
    end
  end
end
hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
