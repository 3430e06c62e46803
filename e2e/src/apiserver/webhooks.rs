//! Mutating admission: on CREATE and UPDATE, call the webhooks of every MutatingWebhookConfiguration whose
//! rules and selectors match, over HTTPS trusting `caBundle`, and apply their JSON patches.

use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

use super::{
    Inner, Shared, objects, resources::ApiResource, selectors::LabelSelector, status::ApiError,
    store,
};

/// A webhook selected for a request.
#[derive(Clone, Debug)]
pub struct Hook {
    pub webhook: Value,
}

impl Hook {
    fn name(&self) -> &str {
        self.webhook["name"].as_str().unwrap_or_default()
    }

    fn ignores_failures(&self) -> bool {
        self.webhook["failurePolicy"] == json!("Ignore")
    }

    fn reinvoke(&self) -> bool {
        self.webhook["reinvocationPolicy"] == json!("IfNeeded")
    }
}

fn contains(list: &Value, wanted: &str) -> bool {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|v| v == "*" || v == wanted)
}

fn rule_matches(rule: &Value, res: &ApiResource, operation: &str) -> bool {
    let resource_ok = rule["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|r| r == "*" || r == "*/*" || r == res.plural);
    let scope_ok = match rule["scope"].as_str().unwrap_or("*") {
        "Namespaced" => res.namespaced,
        "Cluster" => !res.namespaced,
        _ => true,
    };
    contains(&rule["operations"], operation)
        && contains(&rule["apiGroups"], &res.group)
        && contains(&rule["apiVersions"], &res.version)
        && resource_ok
        && scope_ok
}

fn selector_matches(selector: &Value, labels: &Value) -> Result<bool, ApiError> {
    if selector.is_null() {
        return Ok(true);
    }
    Ok(LabelSelector::from_object(selector)?.matches(labels))
}

/// The webhooks that apply to `operation` on `obj`, in the order kube-apiserver calls them
/// (configurations by name, webhooks in declaration order).
pub fn matching(
    inner: &Inner,
    res: &ApiResource,
    operation: &str,
    obj: &Value,
) -> Result<Vec<Hook>, ApiError> {
    // Webhook configurations are never themselves subject to webhooks.
    if res.group == "admissionregistration.k8s.io" {
        return Ok(Vec::new());
    }
    let namespace_labels = if res.plural == "namespaces" && res.group.is_empty() {
        Some(obj["metadata"]["labels"].clone())
    } else if res.namespaced {
        Some(
            inner
                .store
                .get("/namespaces", "", objects::namespace_of(obj))
                .map(|ns| ns["metadata"]["labels"].clone())
                .unwrap_or_default(),
        )
    } else {
        None
    };
    let mut hooks = Vec::new();
    for config in inner.store.list(
        "admissionregistration.k8s.io/mutatingwebhookconfigurations",
        None,
    ) {
        for webhook in config["webhooks"].as_array().into_iter().flatten() {
            let rules_ok = webhook["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| rule_matches(r, res, operation));
            if !rules_ok {
                continue;
            }
            if let Some(labels) = &namespace_labels
                && !selector_matches(&webhook["namespaceSelector"], labels)?
            {
                continue;
            }
            if !selector_matches(&webhook["objectSelector"], &obj["metadata"]["labels"])? {
                continue;
            }
            hooks.push(Hook {
                webhook: webhook.clone(),
            });
        }
    }
    Ok(hooks)
}

/// Runs the hooks in order, then reinvokes once each `IfNeeded` hook whose output a later hook
/// changed. Returns the mutated object or the rejection.
/// What is being admitted, besides the object.
pub struct Request<'a> {
    pub res: &'a ApiResource,
    /// `CREATE` or `UPDATE`.
    pub operation: &'a str,
    /// The stored object, for UPDATE.
    pub old: Option<&'a Value>,
    pub user: &'a Value,
    pub dry_run: bool,
}

pub async fn admit(
    shared: &Shared,
    request: &Request<'_>,
    mut obj: Value,
    hooks: Vec<Hook>,
) -> Result<Value, ApiError> {
    let mut after_each = Vec::with_capacity(hooks.len());
    for hook in &hooks {
        obj = call_with_policy(shared, hook, request, obj).await?;
        after_each.push(obj.clone());
    }
    for (hook, after) in hooks.iter().zip(after_each) {
        if hook.reinvoke() && after != obj {
            obj = call_with_policy(shared, hook, request, obj).await?;
        }
    }
    Ok(obj)
}

async fn call_with_policy(
    shared: &Shared,
    hook: &Hook,
    request: &Request<'_>,
    obj: Value,
) -> Result<Value, ApiError> {
    match call(shared, hook, request, &obj).await {
        Ok(Outcome::Allowed(new)) => Ok(new),
        Ok(Outcome::Denied(err)) => Err(err),
        Err(reason) if hook.ignores_failures() => {
            tracing::warn!(webhook = hook.name(), %reason, "failed calling webhook, ignoring");
            Ok(obj)
        }
        Err(reason) => Err(ApiError::internal(format!(
            "failed calling webhook \"{}\": {reason}",
            hook.name()
        ))),
    }
}

enum Outcome {
    Allowed(Value),
    Denied(ApiError),
}

/// The URL to post to and, for `service` references, the name to resolve to the override.
fn endpoint(
    shared: &Shared,
    config: &Value,
) -> Result<(String, Option<(String, std::net::SocketAddr)>), String> {
    if let Some(url) = config["url"].as_str() {
        return Ok((url.to_owned(), None));
    }
    let service = &config["service"];
    let (ns, name) = (
        service["namespace"].as_str().unwrap_or_default(),
        service["name"].as_str().unwrap_or_default(),
    );
    let port = service["port"].as_u64().unwrap_or(443);
    let path = service["path"].as_str().unwrap_or("/");
    let host = format!("{name}.{ns}.svc");
    let addr = shared
        .config
        .service_overrides
        .get(&format!("{ns}/{name}"))
        .copied()
        .ok_or_else(|| {
            format!(
                "failed to call webhook: service \"{ns}/{name}\" has no address in the local stack \
                 (set service_overrides / {})",
                super::SERVICE_OVERRIDES_ENV
            )
        })?;
    Ok((format!("https://{host}:{port}{path}"), Some((host, addr))))
}

async fn call(
    shared: &Shared,
    hook: &Hook,
    request: &Request<'_>,
    obj: &Value,
) -> Result<Outcome, String> {
    let Request {
        res,
        operation,
        old,
        user,
        dry_run,
    } = *request;
    let timeout = hook.webhook["timeoutSeconds"].as_u64().unwrap_or(10);
    let (url, resolve) = endpoint(shared, &hook.webhook["clientConfig"])?;
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}timeout={timeout}s");
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(timeout));
    if let Some(bundle) = hook.webhook["clientConfig"]["caBundle"].as_str() {
        let pem = STANDARD
            .decode(bundle)
            .map_err(|e| format!("failed to call webhook: invalid caBundle: {e}"))?;
        let tls = crate::tls::webhook_client_config(&pem)
            .map_err(|e| format!("failed to call webhook: invalid caBundle: {e:#}"))?;
        builder = builder.tls_backend_preconfigured(tls);
    }
    if let Some((host, addr)) = &resolve {
        builder = builder.resolve(host, *addr);
    }
    let client = builder
        .build()
        .map_err(|e| format!("failed to call webhook: {e}"))?;
    let uid = store::new_uid();
    let gvk = json!({ "group": res.group, "version": res.version, "kind": res.kind });
    let gvr = json!({ "group": res.group, "version": res.version, "resource": res.plural });
    let mut review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid, "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "operation": operation, "userInfo": user, "object": obj, "oldObject": old,
            "dryRun": dry_run,
            "options": { "apiVersion": "meta.k8s.io/v1",
                "kind": if old.is_some() { "UpdateOptions" } else { "CreateOptions" } },
        },
    });
    // Like the real request, name and namespace are left out when empty (generateName, cluster
    // scope).
    for (key, value) in [
        ("name", objects::name_of(obj)),
        ("namespace", objects::namespace_of(obj)),
    ] {
        if !value.is_empty() {
            review["request"][key] = json!(value);
        }
    }
    let post_err = |e: String| format!("failed to call webhook: Post \"{url}\": {e}");
    let response = client
        .post(&url)
        .json(&review)
        .send()
        .await
        .map_err(|e| post_err(error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(format!(
            "received invalid webhook response: the server responded with status {}",
            response.status()
        ));
    }
    let answer: Value = response
        .json()
        .await
        .map_err(|e| format!("received invalid webhook response: {e}"))?;
    let reply = &answer["response"];
    if reply["uid"].as_str() != Some(uid.as_str()) {
        return Err(format!(
            "received invalid webhook response: expected response.uid=\"{uid}\", got \"{}\"",
            reply["uid"].as_str().unwrap_or_default()
        ));
    }
    if reply["allowed"] != json!(true) {
        return Ok(Outcome::Denied(denial(hook.name(), &reply["status"])));
    }
    // Go's encoding/json decodes `[]byte` from a base64 string, and also from an array of
    // numbers (what kube-rs's AdmissionResponse sends); anything else fails the call.
    let patch = match &reply["patch"] {
        Value::Null => return Ok(Outcome::Allowed(obj.clone())),
        Value::String(patch) => patch.clone(),
        Value::Array(items) => {
            let bytes: Option<Vec<u8>> = items
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            match bytes {
                Some(bytes) => STANDARD.encode(bytes),
                None => {
                    return Err("received invalid webhook response: json: cannot unmarshal \
                                number into Go struct field AdmissionResponse.response.patch \
                                of type uint8"
                        .to_owned());
                }
            }
        }
        other => {
            return Err(format!(
                "received invalid webhook response: json: cannot unmarshal {} into Go struct \
                 field AdmissionResponse.response.patch of type []uint8",
                json_kind(other)
            ));
        }
    };
    let bytes = STANDARD
        .decode(patch)
        .map_err(|e| format!("received invalid webhook response: patch is not base64: {e}"))?;
    let ops: json_patch::Patch = serde_json::from_slice(&bytes)
        .map_err(|e| format!("received invalid webhook response: patch: {e}"))?;
    let mut patched = obj.clone();
    json_patch::patch(&mut patched, &ops.0)
        .map_err(|e| format!("failed to apply the webhook's patch: {e}"))?;
    Ok(Outcome::Allowed(patched))
}

/// The error of an `allowed: false` answer, shaped as kube-apiserver's `ToStatusErr`.
fn denial(name: &str, status: &Value) -> ApiError {
    let code = status["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(400);
    let reason = match status["reason"].as_str().unwrap_or_default() {
        "Forbidden" => "Forbidden",
        "Unauthorized" => "Unauthorized",
        "Invalid" => "Invalid",
        "BadRequest" => "BadRequest",
        "NotFound" => "NotFound",
        "Conflict" => "Conflict",
        "AlreadyExists" => "AlreadyExists",
        "InternalError" => "InternalError",
        _ => "",
    };
    let denied_by = format!("admission webhook \"{name}\" denied the request");
    let message = match (status["message"].as_str(), status["reason"].as_str()) {
        (Some(m), _) if !m.is_empty() => format!("{denied_by}: {m}"),
        (_, Some(r)) if !r.is_empty() => format!("{denied_by}: {r}"),
        _ => format!("{denied_by} without explanation"),
    };
    ApiError::custom(code, reason, message, status.get("details").cloned())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The JSON kind in Go's unmarshalling errors.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::String(_) => "string",
        Value::Null => "null",
    }
}
