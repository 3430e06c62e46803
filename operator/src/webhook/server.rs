//! The webhook's HTTP handler: `POST /mutate` takes an AdmissionReview v1, looks the pod's
//! bindings up, hands them to the pure `passport_webhook::review`, and answers with the response
//! review (UID echoed); the next pod of the same template, with the same bindings, gets the
//! decision kept in the memo (`passport_webhook::memo`). Malformed input gets a 400 with a JSON
//! error, never a panic. Every decision that involved a policy writes an audit line; a policy
//! skipped or a pod refused for its conditions also gets a Warning Event on the policy.

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
use passport_webhook::{
    Admission, Bindings, Decision, Memo, Request, ReviewError, Reviewed, Trace, memo,
};

use super::lookups::Lookups;
use crate::{audit, metrics::Metrics};

/// What the handler needs.
pub struct WebhookState {
    pub lookups: Lookups,
    pub metrics: Arc<Metrics>,
    /// Events about skipped policies and refused pods; None in tests without a cluster.
    pub recorder: Option<Recorder>,
    /// Recent decisions, answering the next pod of the same template from the same bindings.
    pub memo: Memo,
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
    let answer = match answer(&state, &body).await {
        Ok(answer) => answer,
        // Passport's own failures are its fault, not the request's.
        Err(error @ ReviewError::Serialize(_)) => {
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
    let reviewed = answer.reviewed();
    let label = match &reviewed.decision {
        Decision::Ignored { .. } => "ignored",
        Decision::Admitted {
            applied, compat, ..
        } if applied.is_empty() && compat.is_empty() => "untouched",
        Decision::Admitted { .. } => "injected",
        Decision::Denied(_) => "denied",
    };
    state.metrics.admission(label, started.elapsed());
    record(&state, &answer);
    match answer.to_json() {
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

/// The decision answering one request, and whether the request is a dry run.
struct Answer {
    decided: Decided,
    dry_run: bool,
}

enum Decided {
    /// Decided for this request.
    Now(Reviewed),
    /// Decided for this request, and shared with the memo when it keeps it.
    Kept(Arc<memo::Decided>),
    /// Decided for an earlier request on a pod of the same template, from the same bindings.
    Again(Arc<memo::Decided>, Request),
}

impl Answer {
    fn reviewed(&self) -> &Reviewed {
        match &self.decided {
            Decided::Now(reviewed) => reviewed,
            Decided::Kept(kept) | Decided::Again(kept, _) => &kept.reviewed,
        }
    }

    /// The decision's trace already written as JSON: a memo decision's, for every request it
    /// answers.
    fn trace_json(&self) -> Option<&serde_json::value::RawValue> {
        match &self.decided {
            Decided::Now(_) => None,
            Decided::Kept(kept) | Decided::Again(kept, _) => kept.trace_json(),
        }
    }

    /// The UID of the request answered.
    fn uid(&self) -> &str {
        match &self.decided {
            Decided::Again(_, request) => request.uid(),
            _ => &self.reviewed().response.uid,
        }
    }

    /// The response AdmissionReview, for the request answered.
    fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        match &self.decided {
            Decided::Now(reviewed) => reviewed.to_json(),
            Decided::Kept(kept) => {
                let response = &kept.reviewed.response;
                kept.to_json_for(&response.api_version, &response.uid)
            }
            Decided::Again(kept, request) => kept.to_json_for(request.api_version(), request.uid()),
        }
    }
}

/// Decides on `body`: with the memo, a pod of the same template as one decided a moment ago
/// (the same but for its token volume's name and its managed fields), with the same bindings,
/// gets that decision again without being parsed (`passport_webhook::memo`).
async fn answer(state: &WebhookState, body: &[u8]) -> Result<Answer, ReviewError> {
    let now = jiff::Timestamp::now();
    if !state.memo.enabled() {
        // One parse; the bindings are looked up between it and the pure decision.
        let admission = Admission::parse(body)?;
        let dry_run = admission.dry_run();
        let bindings = bindings(state, &admission, now).await;
        let decided = Decided::Now(admission.decide(&bindings)?);
        return Ok(Answer { decided, dry_run });
    }
    let request = Request::read(body)?;
    // A dry run (`kubectl apply --dry-run=server`) must have no side effects (`sideEffects:
    // None`): its decision is audited, but it publishes no Event.
    let dry_run = request.dry_run();
    let namespace = request.namespace().map(str::to_owned);
    let kept = match request.created_pod() {
        Some(key) => state.memo.get(namespace.as_deref(), key),
        // Not a CREATE: nothing is looked up or decided.
        None => {
            let (admission, _) = request.admission()?;
            let decided = Decided::Now(admission.decide(&state.lookups.no_bindings(now))?);
            return Ok(Answer { decided, dry_run });
        }
    };
    let ((admission, key), bindings) = match kept {
        Some(kept) => {
            let (ns, sa) = kept.subject();
            let bindings = state.lookups.bindings(ns, sa, now).await;
            if kept.answers(&bindings) {
                state.metrics.memo("hit");
                let decided = Decided::Again(kept, request);
                return Ok(Answer { decided, dry_run });
            }
            // Something the decision read changed: decided again, from the bindings of now.
            state.metrics.memo("stale");
            (request.admission()?, bindings)
        }
        None => {
            state.metrics.memo("miss");
            let (admission, key) = request.admission()?;
            let bindings = bindings(state, &admission, now).await;
            ((admission, key), bindings)
        }
    };
    let reviewed = admission.decide(&bindings)?;
    let Some(key) = key.filter(|key| !(key.masked() && memo::names_a_token_volume(&reviewed)))
    else {
        // The decision names the token volume as the key writes it: made again from the pod as
        // it arrived, and not kept.
        let decided = Decided::Now(Admission::parse(body)?.decide(&bindings)?);
        return Ok(Answer { decided, dry_run });
    };
    let kept = state
        .memo
        .keep(namespace.as_deref(), &key, &bindings, reviewed)
        .map_err(ReviewError::Serialize)?;
    let decided = Decided::Kept(kept);
    Ok(Answer { decided, dry_run })
}

/// The bindings of the pod an admission creates (none for other operations).
async fn bindings(state: &WebhookState, admission: &Admission, now: jiff::Timestamp) -> Bindings {
    match admission.subject() {
        Some((namespace, service_account)) => {
            state
                .lookups
                .bindings(namespace, service_account, now)
                .await
        }
        None => state.lookups.no_bindings(now),
    }
}

/// The audit line and Events of the decision of an answer that involved a policy (no Events
/// for a dry run), its correlation ID the UID of the request answered.
fn record(state: &WebhookState, answer: &Answer) {
    let reviewed = answer.reviewed();
    let dry_run = answer.dry_run;
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
        correlation_id: answer.uid(),
        namespace: &reviewed.namespace,
        pod: &reviewed.pod,
        service_account: &reviewed.service_account,
        decision,
        applied,
        skipped: &skipped,
        compat,
        trace: answer
            .trace_json()
            .map_or(audit::TraceText::Steps(trace), audit::TraceText::Json),
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
