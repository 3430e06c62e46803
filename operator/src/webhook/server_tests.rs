//! The webhook handler through its router (`oneshot`), with the lookups' stores filled by hand:
//! malformed input is a 400 with a JSON error, a pod admission echoes its UID and carries the
//! injection patch, and a miss with no API server still answers.

use std::{sync::Arc, time::Duration};

use axum::{body::Body, http::Request};
use tower::ServiceExt as _;

use super::*;
use crate::webhook::lookups::Lookups;

fn lookups(
    policies: Vec<passport_crds::AccessPolicy>,
    trusts: Vec<passport_crds::FederatedTrust>,
) -> Lookups {
    // No API server behind this client (port 1 refuses): misses fail fast, the stores answer.
    let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    Lookups::for_tests(
        client,
        Arc::new(passport_webhook::Config::new("prod")),
        Duration::from_millis(200),
        policies,
        trusts,
    )
}

/// The AWS trust of the tests, admitting every namespace.
fn aws_trust() -> passport_crds::FederatedTrust {
    serde_yaml::from_str(
        "metadata: {name: aws}\nspec:\n  issuer: {url: 'https://oidc.example.com'}\n  aws: {accountId: '123456789012'}\n  namespaceSelector: {}\n",
    )
    .unwrap()
}

/// Policy `shop/api` of service account `api` on that trust, with `extra` lines of its spec.
fn api_policy(extra: &str) -> passport_crds::AccessPolicy {
    serde_yaml::from_str(&format!(
        "metadata: {{name: api, namespace: shop}}\nspec:\n  trustRef: {{name: aws}}\n  serviceAccounts: [api]\n  aws: {{roleName: shop-api}}\n{extra}"
    ))
    .unwrap()
}

fn state(lookups: Lookups) -> Arc<WebhookState> {
    state_with_memo(lookups, 1 << 20)
}

fn state_with_memo(lookups: Lookups, memo_bytes: usize) -> Arc<WebhookState> {
    Arc::new(WebhookState {
        lookups,
        metrics: Arc::new(Metrics::new(crate::cloud::Calls::default())),
        recorder: None,
        memo: passport_webhook::Memo::new(memo_bytes),
    })
}

async fn post(state: Arc<WebhookState>, body: &str) -> (StatusCode, serde_json::Value) {
    post_to(router(state), body).await
}

/// POSTs `body` to `/mutate` of `router` in-process; the status and the JSON answer (`null`
/// when the answer is not JSON). The null webhook's tests use it too.
pub(crate) async fn post_to(router: axum::Router, body: &str) -> (StatusCode, serde_json::Value) {
    let response = router
        .oneshot(
            Request::post("/mutate")
                .header("content-type", "application/json")
                .body(Body::from(body.to_owned()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

fn review(uid: &str, namespace: &str, sa: &str) -> String {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "app", "namespace": namespace},
                "spec": {"serviceAccountName": sa, "containers": [{"name": "app", "image": "registry.example.com/app@sha256:0"}]}
            }
        }
    })
    .to_string()
}

#[tokio::test]
async fn malformed_bodies_get_a_400_with_a_json_error() {
    // Without the memo, the review is read in one pass; with it, its pod is read apart.
    let without_memo = state_with_memo(lookups(Vec::new(), Vec::new()), 0);
    let pod_not_an_object =
        review("u-1", "shop", "api").replace(r#""object":{"#, r#""object":[],"unused":{"#);
    for body in [pod_not_an_object.as_str(), "{\"request\": 5}"] {
        for state in [state(lookups(Vec::new(), Vec::new())), without_memo.clone()] {
            let (status, json) = post(state, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        }
    }
    let state = state(lookups(Vec::new(), Vec::new()));
    for body in ["", "{", "[]", r#"{"kind":"AdmissionReview"}"#] {
        let (status, json) = post(state.clone(), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}: {json}"
        );
    }
    let not_a_pod = include_str!("../../../webhook/tests/fixtures/not-a-pod.json");
    let (status, json) = post(state, not_a_pod).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json["error"].as_str().unwrap().contains("not a v1 Pod"),
        "{json}"
    );
}

#[tokio::test]
async fn a_pod_with_a_policy_gets_its_patch_and_its_uid_back() {
    let trust = aws_trust();
    let policy = api_policy("");
    let state = state(lookups(vec![policy], vec![trust]));
    let (status, json) = post(state.clone(), &review("u-1", "shop", "api")).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let response = &json["response"];
    assert_eq!(response["uid"], "u-1");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch", "{json}");
    use base64::Engine as _;
    let patch = base64::engine::general_purpose::STANDARD
        .decode(
            response["patch"]
                .as_str()
                .unwrap_or_else(|| panic!("{json}")),
        )
        .unwrap();
    let patch = String::from_utf8(patch).unwrap();
    assert!(
        patch.contains("arn:aws:iam::123456789012:role/passport/shop-api"),
        "{patch}"
    );

    // Another service account: admitted untouched, with the UID echoed.
    let (status, json) = post(state.clone(), &review("u-2", "shop", "other")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["response"]["uid"], "u-2");
    assert!(json["response"]["patch"].is_null(), "{json}");
    let metrics = state.metrics.encode();
    assert!(
        metrics.contains(
            r#"passport_webhook_admission_duration_seconds_count{decision="injected"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"passport_webhook_admission_duration_seconds_count{decision="untouched"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_delete_is_admitted_untouched_without_an_object() {
    let state = state(lookups(Vec::new(), Vec::new()));
    let body = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "d-1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "app",
            "namespace": "shop",
            "operation": "DELETE",
            "userInfo": {"username": "alice"},
            "object": null,
            "oldObject": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app"}, "spec": {"containers": []}}
        }
    })
    .to_string();
    let (status, json) = post(state, &body).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["response"]["uid"], "d-1");
    assert_eq!(json["response"]["allowed"], true);
    assert!(json["response"]["patch"].is_null());
}

#[tokio::test]
async fn a_dry_run_refusal_is_answered_and_audited_but_raises_no_event() {
    let trust = aws_trust();
    let policy = api_policy(
        "  conditions:\n    images: {allowedPrefixes: [docker.io/library/]}\n  enforcement: Reject\n",
    );
    let lookups = lookups(vec![policy], vec![trust]);
    let bindings = lookups
        .bindings("shop", "api", jiff::Timestamp::now())
        .await;
    let body = review("u-3", "shop", "api");
    let reviewed = passport_webhook::review(
        body.as_bytes(),
        &|_: &str, _: &str, _: &k8s_openapi::api::core::v1::Pod| bindings.clone(),
    )
    .unwrap();
    assert!(
        matches!(reviewed.decision, Decision::Denied(_)),
        "the image is outside the allowed prefixes"
    );
    let events = admission_events(&reviewed, false);
    assert_eq!(events.len(), 1, "{events:?}");
    let (policy, note, action) = &events[0];
    assert_eq!((policy.as_str(), *action), ("api", "Reject"));
    assert!(note.starts_with("pod app was refused:"), "{note}");
    assert!(
        admission_events(&reviewed, true).is_empty(),
        "a dry run (kubectl apply --dry-run=server, GitOps diffs) persists nothing, so no Event"
    );

    // The API server still gets the same answer for the dry run.
    let state = state(lookups);
    let dry: serde_json::Value = {
        let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["request"]["dryRun"] = serde_json::Value::Bool(true);
        v
    };
    let (status, json) = post(state, &dry.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["response"]["allowed"], false, "{json}");
}

/// The memo answers a pod it decided a moment ago (another pod of the same ReplicaSet) as the
/// first time, its own UID echoed; without the memo, the same answers.
#[tokio::test]
async fn a_repeated_pod_gets_the_same_answer_from_the_memo() {
    let trust = aws_trust();
    let policies: Vec<passport_crds::AccessPolicy> = [
        "metadata: {name: api, namespace: shop}\nspec:\n  trustRef: {name: aws}\n  serviceAccounts: [api]\n  aws: {roleName: shop-api}\n",
        "metadata: {name: pinned, namespace: shop}\nspec:\n  trustRef: {name: aws}\n  serviceAccounts: [batch]\n  aws: {}\n  conditions:\n    images: {allowedPrefixes: [docker.io/library/]}\n  enforcement: Reject\n",
    ]
    .iter()
    .map(|p| serde_yaml::from_str(p).unwrap())
    .collect();
    let with_memo = state(lookups(policies.clone(), vec![trust.clone()]));
    let without = state_with_memo(lookups(policies, vec![trust]), 0);
    for (sa, allowed) in [("api", true), ("batch", false)] {
        let mut answers = Vec::new();
        for state in [&with_memo, &without] {
            for uid in ["u-1", "u-2", "u-3"] {
                let (status, json) = post(state.clone(), &review(uid, "shop", sa)).await;
                assert_eq!(status, StatusCode::OK, "{json}");
                assert_eq!(json["response"]["uid"], uid);
                assert_eq!(json["response"]["allowed"], allowed, "{json}");
                let mut response = json["response"].clone();
                response["uid"] = serde_json::Value::Null;
                answers.push(response);
            }
        }
        assert!(answers.iter().all(|a| *a == answers[0]), "{answers:#?}");
        if allowed {
            assert!(answers[0]["patch"].is_string(), "{:?}", answers[0]);
        }
    }
    let metrics = with_memo.metrics.encode();
    for line in [
        r#"passport_webhook_memo_lookups_total{result="miss"} 2"#,
        r#"passport_webhook_memo_lookups_total{result="hit"} 4"#,
        r#"passport_webhook_admission_duration_seconds_count{decision="injected"} 3"#,
        r#"passport_webhook_admission_duration_seconds_count{decision="denied"} 3"#,
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
    assert!(!without.metrics.encode().contains("memo_lookups_total{"));
}

/// A decision that names the pod's token volume (a container mounts it where Passport mounts the
/// AWS token) is made from the review as it arrived, never from the memo's key, and not kept:
/// its trace names the pod's own volume.
#[tokio::test]
async fn a_decision_that_names_the_token_volume_is_made_from_the_review_itself() {
    let trust = aws_trust();
    let policy = api_policy("");
    let state = state(lookups(vec![policy], vec![trust]));
    let mut body: serde_json::Value = serde_json::from_str(&review("u-1", "shop", "api")).unwrap();
    let pod = &mut body["request"]["object"];
    pod["spec"]["volumes"] = serde_json::json!([{"name": "kube-api-access-x7k2p", "emptyDir": {}}]);
    pod["spec"]["containers"][0]["volumeMounts"] = serde_json::json!([{
        "name": "kube-api-access-x7k2p",
        "mountPath": passport_webhook::grants::paths::AWS_MOUNT,
    }]);
    let body = body.to_string();
    for _ in 0..2 {
        let answer = answer(&state, body.as_bytes()).await.unwrap();
        let Decision::Admitted { trace, .. } = &answer.reviewed().decision else {
            panic!("{:?}", answer.reviewed().decision)
        };
        let text = trace.text();
        assert!(text.contains("kube-api-access-x7k2p"), "{text}");
        assert!(!text.contains("kube-api-access-*"), "{text}");
        assert!(matches!(answer.decided, Decided::Now(_)));
    }
    assert!(state.memo.is_empty());
}
