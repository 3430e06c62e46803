//! The null webhook of the benchmarks (`passport-null-webhook`, `operator/tests/bench/webhook.rs`):
//! the same HTTPS serving path as `passport run`'s webhook ([`super::serve_https`]) behind a
//! handler that decides nothing. It reads the request's UID, as any webhook must to answer, and
//! returns `allowed: true` with no patch: serde skips the rest of the body without building
//! anything, and there are no lookups, no metrics and no audit. What `/mutate` costs beyond it
//! is Passport's own work.
//!
//! [`router_kube`] is a second baseline, for context: a null webhook written as kube-rs's
//! admission example writes one, reading the review into kube's `AdmissionReview` of a
//! `DynamicObject` (the pod as a JSON tree) and answering with kube's `AdmissionResponse`. It
//! is what a webhook that reads its request the usual way costs, before deciding anything.

use std::borrow::Cow;

use axum::{
    Json, Router,
    body::Bytes,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Review<'a> {
    #[serde(borrow)]
    request: Uid<'a>,
}

#[derive(Deserialize)]
struct Uid<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: Allowed<'a>,
}

#[derive(Serialize)]
struct Allowed<'a> {
    uid: Cow<'a, str>,
    allowed: bool,
}

/// `POST /mutate`, answering every review with `allowed: true` and no patch.
pub fn router() -> Router {
    Router::new().route("/mutate", post(allow))
}

/// The 400 of a body that is not an AdmissionReview.
fn not_a_review(error: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({
            "error": format!("the body is not an AdmissionReview: {error}")
        })),
    )
        .into_response()
}

/// `POST /mutate` as kube-rs's admission example serves it: the whole review read into kube's
/// types, answered `allowed: true` with no patch.
pub fn router_kube() -> Router {
    Router::new().route("/mutate", post(allow_kube))
}

async fn allow_kube(body: Bytes) -> Response {
    use kube::core::{
        DynamicObject,
        admission::{AdmissionRequest, AdmissionResponse, AdmissionReview},
    };
    let request: Result<AdmissionRequest<DynamicObject>, _> =
        serde_json::from_slice::<AdmissionReview<DynamicObject>>(&body)
            .map_err(|error| error.to_string())
            .and_then(|review| review.try_into().map_err(|error| format!("{error}")));
    match request {
        Ok(request) => Json(AdmissionResponse::from(&request).into_review()).into_response(),
        Err(error) => not_a_review(error),
    }
}

async fn allow(body: Bytes) -> Response {
    match serde_json::from_slice::<Review<'_>>(&body) {
        Ok(review) => Json(Answer {
            api_version: "admission.k8s.io/v1",
            kind: "AdmissionReview",
            response: Allowed {
                uid: review.request.uid,
                allowed: true,
            },
        })
        .into_response(),
        Err(error) => not_a_review(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(body: &str) -> (StatusCode, serde_json::Value) {
        crate::webhook::server::tests::post_to(router(), body).await
    }

    #[tokio::test]
    async fn the_kube_baseline_reads_the_whole_review_and_allows_it_with_no_patch() {
        let (status, answer) = crate::webhook::server::tests::post_to(
            router_kube(),
            include_str!("../../tests/bench/review.json"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1", "{answer}");
        assert_eq!(answer["kind"], "AdmissionReview", "{answer}");
        let response = &answer["response"];
        assert_eq!(response["uid"], "0f9d4c5e-6b1a-4d8e-9c3f-2a7b8e1d5c60");
        assert_eq!(response["allowed"], true, "{answer}");
        assert!(response.get("patch").is_none(), "{answer}");
        // kube's types require the request's members: a body the UID-only baseline answers is
        // refused here.
        let (status, answer) = crate::webhook::server::tests::post_to(
            router_kube(),
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    }

    #[tokio::test]
    async fn a_review_is_allowed_with_its_uid_and_no_patch() {
        let (status, answer) = post(
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-\"1\"","object":{"spec":{"containers":[]}}}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            answer,
            serde_json::json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {"uid": "u-\"1\"", "allowed": true},
            })
        );
    }

    #[tokio::test]
    async fn a_body_without_a_request_uid_is_a_400() {
        let (status, answer) = post(r#"{"request":{}}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            answer["error"].as_str().unwrap().contains("uid"),
            "{answer}"
        );
    }
}
