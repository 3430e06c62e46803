//! The webhook's HTTP handler: `POST /mutate` takes an AdmissionReview v1, looks the pod's
//! bindings up, hands them to the pure `passport_webhook::review`, and answers with the response
//! review (UID echoed). Malformed input gets a 400 with a JSON error, never a panic. Every
//! decision that involved a policy writes an audit line; a policy skipped or a pod refused for
//! its conditions also gets a Warning Event on the policy.

use std::{sync::Arc, time::Instant};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::runtime::events::{Event, EventType, Recorder};
use passport_webhook::{Decision, ReviewError, Reviewed};

use super::lookups::Lookups;
use crate::{audit, metrics::Metrics};

/// The few fields of an AdmissionReview the handler reads before the review: serde skips the
/// rest without building it (a typed Pod would be a second full parse).
#[derive(serde::Deserialize)]
struct Peek {
    request: Option<PeekRequest>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeekRequest {
    #[serde(default)]
    operation: String,
    namespace: Option<String>,
    #[serde(default)]
    dry_run: bool,
    object: Option<PeekPod>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct PeekPod {
    metadata: Option<PeekMeta>,
    spec: Option<PeekSpec>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct PeekMeta {
    namespace: Option<String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PeekSpec {
    service_account_name: Option<String>,
    service_account: Option<String>,
}

/// What the handler needs.
pub struct WebhookState {
    pub lookups: Lookups,
    pub metrics: Arc<Metrics>,
    /// Events about skipped policies and refused pods; None in tests without a cluster.
    pub recorder: Option<Recorder>,
}

pub fn router(state: Arc<WebhookState>) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .with_state(state)
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

async fn mutate(State(state): State<Arc<WebhookState>>, body: Bytes) -> Response {
    let started = Instant::now();
    // The pod's namespace and service account, to look its bindings up before the pure review
    // (which parses and checks the whole review itself).
    let peeked: Peek = match serde_json::from_slice(&body) {
        Ok(peeked) => peeked,
        Err(error) => {
            state.metrics.admission("invalid", started.elapsed());
            return bad_request(format!("the body is not an AdmissionReview: {error}"));
        }
    };
    // A dry run (`kubectl apply --dry-run=server`) must have no side effects (`sideEffects:
    // None`): its decision is audited, but it publishes no Event.
    let dry_run = peeked.request.as_ref().is_some_and(|r| r.dry_run);
    let (namespace, service_account) = match peeked.request {
        // Only a CREATE is mutated: no lookups for the others.
        Some(request) if request.operation == "CREATE" => {
            let pod = request.object.unwrap_or_default();
            let namespace = request
                .namespace
                .or(pod.metadata.and_then(|m| m.namespace))
                .unwrap_or_default();
            let sa = pod
                .spec
                .and_then(|s| s.service_account_name.or(s.service_account))
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "default".to_owned());
            (namespace, sa)
        }
        _ => (String::new(), String::new()),
    };
    let bindings = if namespace.is_empty() {
        None
    } else {
        Some(
            state
                .lookups
                .bindings(&namespace, &service_account, jiff::Timestamp::now())
                .await,
        )
    };
    let source = |ns: &str, _sa: &str, _pod: &Pod| match &bindings {
        Some(b) => b.clone(),
        None => passport_webhook::Bindings::new(
            ns,
            jiff::Timestamp::now(),
            Arc::new(passport_webhook::Config::new("")),
        ),
    };
    let reviewed = match passport_webhook::review(&body, &source) {
        Ok(reviewed) => reviewed,
        // Passport's own failures are its fault, not the request's.
        Err(error @ (ReviewError::Serialize(_) | ReviewError::Patch(_))) => {
            state.metrics.admission("invalid", started.elapsed());
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({ "error": error.to_string() })),
            )
                .into_response();
        }
        Err(error) => {
            state.metrics.admission("invalid", started.elapsed());
            return bad_request(error.to_string());
        }
    };
    let label = match &reviewed.decision {
        Decision::Ignored { .. } => "ignored",
        Decision::Admitted {
            applied, compat, ..
        } if applied.is_empty() && compat.is_empty() => "untouched",
        Decision::Admitted { .. } => "injected",
        Decision::Denied(_) => "denied",
    };
    state.metrics.admission(label, started.elapsed());
    record(&state, &reviewed, dry_run);
    match reviewed.to_wire() {
        Ok(wire) => (StatusCode::OK, Json(wire)).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({ "error": format!("encoding the response: {error}") })),
        )
            .into_response(),
    }
}

/// What an audit line records: decision, policies applied, policies skipped (with why), the
/// compatibility modes that granted, and the trace.
type Audited<'a> = (
    &'a str,
    Vec<String>,
    Vec<(String, String)>,
    Vec<String>,
    String,
);

/// The audit line and Events of a decision that involved a policy (no Events for a dry run).
fn record(state: &WebhookState, reviewed: &Reviewed, dry_run: bool) {
    let (decision, applied, skipped, compat, trace): Audited<'_> = match &reviewed.decision {
        Decision::Ignored { .. } => return,
        Decision::Admitted {
            applied,
            skipped,
            compat,
            trace,
        } => {
            if applied.is_empty() && skipped.is_empty() && compat.is_empty() {
                return;
            }
            (
                "admitted",
                applied.clone(),
                skipped
                    .iter()
                    .map(|s| (s.policy.clone(), s.reason.clone()))
                    .collect(),
                compat.clone(),
                trace.to_string(),
            )
        }
        Decision::Denied(denial) => (
            "denied",
            Vec::new(),
            denial
                .policies
                .iter()
                .map(|p| (p.clone(), denial.message.clone()))
                .collect(),
            Vec::new(),
            denial.trace.to_string(),
        ),
    };
    tracing::info!(
        target: audit::TARGET,
        kind = "Pod",
        correlation_id = %reviewed.uid,
        namespace = %reviewed.namespace,
        pod = %reviewed.pod,
        service_account = %reviewed.service_account,
        decision,
        applied = %applied.join(","),
        skipped = %skipped.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(","),
        compat = %compat.join(","),
        trace = %trace,
        dry_run,
        "admission"
    );
    let Some(recorder) = state.recorder.clone() else {
        return;
    };
    let namespace = reviewed.namespace.clone();
    let events = admission_events(reviewed, dry_run);
    if events.is_empty() {
        return;
    }
    // Events are published off the request path.
    tokio::spawn(async move {
        for (policy, note, action) in events {
            let reference = ObjectReference {
                api_version: Some(format!(
                    "{}/{}",
                    passport_crds::keys::GROUP,
                    passport_crds::keys::VERSION
                )),
                kind: Some("AccessPolicy".to_owned()),
                namespace: Some(namespace.clone()),
                name: Some(policy),
                ..ObjectReference::default()
            };
            let event = Event {
                type_: EventType::Warning,
                reason: "ConditionsNotMet".to_owned(),
                note: Some(crate::controllers::context::truncate(note, 1000)),
                action: action.to_owned(),
                secondary: None,
            };
            if let Err(error) = recorder.publish(&event, &reference).await {
                tracing::warn!(%error, "could not publish an admission Event");
            }
        }
    });
}

/// The Warning Events of a decision, one per policy that skipped or refused the pod, as
/// `(policy name, note, action)`. None for a dry run: the API server persists nothing of it
/// (`kubectl apply --dry-run=server`, Argo CD and Flux diffs), so an Event would report a pod
/// that never existed.
fn admission_events(reviewed: &Reviewed, dry_run: bool) -> Vec<(String, String, &'static str)> {
    if dry_run {
        return Vec::new();
    }
    let pod = reviewed.pod.clone();
    match &reviewed.decision {
        Decision::Admitted { skipped, .. } => skipped
            .iter()
            .map(|s| {
                (
                    policy_name(&s.policy),
                    format!(
                        "pod {pod} was admitted without this policy's credentials: {}",
                        s.reason
                    ),
                    "Skip",
                )
            })
            .collect(),
        Decision::Denied(denial) => denial
            .policies
            .iter()
            .map(|p| {
                (
                    policy_name(p),
                    format!("pod {pod} was refused: {}", denial.message),
                    "Reject",
                )
            })
            .collect(),
        Decision::Ignored { .. } => Vec::new(),
    }
}

/// `namespace/name` → `name`.
fn policy_name(policy: &str) -> String {
    policy.rsplit('/').next().unwrap_or(policy).to_owned()
}

#[cfg(test)]
#[path = "server_tests.rs"]
pub(crate) mod tests;
