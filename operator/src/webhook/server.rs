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
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use passport_webhook::{Decision, Reviewed, Trace};

use super::lookups::Lookups;
use crate::{audit, metrics::Metrics};

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
    // One parse; the bindings are looked up between it and the pure decision.
    let admission = match passport_webhook::Admission::parse(&body) {
        Ok(admission) => admission,
        Err(error) => {
            state.metrics.admission("invalid", started.elapsed());
            return bad_request(error.to_string());
        }
    };
    let now = jiff::Timestamp::now();
    let bindings = match admission.subject() {
        Some((namespace, service_account)) => {
            state
                .lookups
                .bindings(namespace, service_account, now)
                .await
        }
        // Not a CREATE: nothing is looked up or decided.
        None => state.lookups.no_bindings(now),
    };
    // A dry run (`kubectl apply --dry-run=server`) must have no side effects (`sideEffects:
    // None`): its decision is audited, but it publishes no Event.
    let dry_run = admission.dry_run();
    let reviewed = match admission.decide(&bindings) {
        Ok(reviewed) => reviewed,
        // Passport's own failures are its fault, not the request's.
        Err(error) => {
            state.metrics.admission("invalid", started.elapsed());
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({ "error": error.to_string() })),
            )
                .into_response();
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
    match reviewed.to_json() {
        Ok(bytes) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({ "error": format!("encoding the response: {error}") })),
        )
            .into_response(),
    }
}

/// The audit line and Events of a decision that involved a policy (no Events for a dry run).
fn record(state: &WebhookState, reviewed: &Reviewed, dry_run: bool) {
    let no_names: &[String] = &[];
    let (decision, applied, skipped, compat, trace): (_, _, Vec<&str>, _, &Trace) =
        match &reviewed.decision {
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
                let skipped = skipped.iter().map(|s| s.policy.as_str()).collect();
                (
                    "admitted",
                    applied.as_slice(),
                    skipped,
                    compat.as_slice(),
                    trace,
                )
            }
            Decision::Denied(denial) => {
                let refused = denial.policies.iter().map(String::as_str).collect();
                ("denied", no_names, refused, no_names, &denial.trace)
            }
        };
    audit::admission(&audit::Admission {
        correlation_id: &reviewed.response.uid,
        namespace: &reviewed.namespace,
        pod: &reviewed.pod,
        service_account: &reviewed.service_account,
        decision,
        applied,
        skipped: &skipped,
        compat,
        trace,
        dry_run,
    });
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
