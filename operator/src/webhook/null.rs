//! The null webhook of the benchmarks (`passport-null-webhook`, `operator/tests/bench/webhook.rs`):
//! the same HTTPS serving path as `passport run`'s webhook ([`super::serve_https`]) behind a
//! handler that decides nothing. It reads the request's UID, as any webhook must to answer, and
//! returns `allowed: true` with no patch: serde skips the rest of the body without building
//! anything, and there are no lookups, no metrics and no audit. What `/mutate` costs beyond it
//! is Passport's own work.

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
        Err(error) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({
                "error": format!("the body is not an AdmissionReview: {error}")
            })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(body: &str) -> (StatusCode, serde_json::Value) {
        crate::webhook::server::tests::post_to(router(), body).await
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
