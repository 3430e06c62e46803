-- Argo CD health check for passport.dev/AccessPolicy (argocd-cm key
-- resource.customizations.health.passport.dev_AccessPolicy; see config/argocd/README.md).
-- Lua 5.1, as Argo CD runs it (gopher-lua); `obj` is the live object.
--
--   status.observedGeneration < metadata.generation,
--     or no status, conditions or Ready yet, or Ready=Unknown  -> Progressing
--   metadata.deletionTimestamp set and Ready not False         -> Progressing
--   Ready=True                                                 -> Healthy
--   Ready=False, transient reason (Passport retries soon):
--     Progressing, Throttled, CloudUnavailable, Conflict       -> Progressing
--   Ready=False, CloudRejected from Verified (CloudSynced=True):
--     the token exchange failed; new credentials take minutes
--     to propagate in the clouds, and it is retried every 30 s -> Progressing
--   Ready=False, Deleting: the cleanup failed                  -> as CloudSynced's reason
--   Ready=False, a reason a person has to fix:
--     IssuerUnreachable, IssuerNotPublic, TrustNotFound,
--     NamespaceNotAllowed, CloudMismatch, IdentityNotAllowed,
--     InvalidConditions, TrustPolicyTooLarge,
--     FederatedCredentialLimit, SubjectTooLong, AccessDenied,
--     NotOwned, CloudRejected, and any reason not listed here  -> Degraded
--
-- The message is "<reason>: <message>" of Ready, or of the failing condition when Ready has
-- none. Passport has no Suspended state; Argo CD itself reports Missing for an absent object.

local TRANSIENT = {
  Progressing = true,
  Throttled = true,
  CloudUnavailable = true,
  Conflict = true,
}

local function find(conditions, wanted)
  for _, c in ipairs(conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

-- nil for an absent or empty string.
local function text(value)
  if value == nil or value == "" then
    return nil
  end
  return value
end

-- Every reason that is not transient needs a person, and so does one this script does not
-- know: it is shown rather than waited on.
local function classify(reason)
  if TRANSIENT[reason] then
    return "Progressing"
  end
  return "Degraded"
end

local function health(obj)
  local meta = obj.metadata or {}
  local status = obj.status
  if status == nil or status.conditions == nil or #status.conditions == 0 then
    return "Progressing", "Waiting for Passport to report conditions"
  end
  local ready = find(status.conditions, "Ready")
  -- kstatus reads status.observedGeneration; Ready's own observedGeneration says the same.
  local generation = meta.generation
  local observed = status.observedGeneration
  if ready ~= nil and ready.observedGeneration ~= nil then
    if observed == nil or ready.observedGeneration < observed then
      observed = ready.observedGeneration
    end
  end
  if generation ~= nil and observed ~= nil and observed < generation then
    return "Progressing",
      "Waiting for Passport to reconcile generation " .. generation .. " (status is of "
        .. observed .. ")"
  end
  if ready == nil or (ready.status ~= "True" and ready.status ~= "False") then
    return "Progressing", text(ready and ready.message) or "Waiting for the Ready condition"
  end
  if ready.status == "True" then
    if meta.deletionTimestamp ~= nil then
      return "Progressing", "Being deleted: Passport is removing its cloud objects"
    end
    return "Healthy", text(ready.message) or "Ready"
  end

  local reason = text(ready.reason) or "Unknown"
  local synced = find(status.conditions, "CloudSynced")
  local verified = find(status.conditions, "Verified")
  local failing = nil
  if synced ~= nil and synced.status == "False" then
    failing = synced
  elseif verified ~= nil and verified.status == "False" then
    failing = verified
  end
  local message = reason .. ": " .. (text(ready.message) or text(failing and failing.message)
    or "no message")
  if reason == "Deleting" then
    return classify(text(synced and synced.reason) or "Progressing"), message
  end
  if reason == "CloudRejected" and synced ~= nil and synced.status == "True" then
    return "Progressing",
      "Waiting for the token exchange to work (new credentials can take minutes): " .. message
  end
  return classify(reason), message
end

local hs = {}
hs.status, hs.message = health(obj)
return hs
