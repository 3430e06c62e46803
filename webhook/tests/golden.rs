//! Golden AdmissionReviews: one request per file under `tests/fixtures/`, the bindings here,
//! the decoded patch, the response and the decision trace snapshotted with insta.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{NS, PolicyFixture, World, fixture, labels};
use k8s_openapi::api::core::v1::Pod;
use passport_crds::AccessPolicy;
use passport_crds::access_policy::Weekday;
use passport_webhook::{Bindings, Decision, ReviewError, review};
use serde::Serialize;

#[derive(Serialize)]
struct Golden {
    allowed: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<Vec<String>>,
    patch: serde_json::Value,
    trace: Vec<String>,
}

/// Reviews `tests/fixtures/<name>.json` with `bindings`, checks the UID is echoed and the
/// patch applies to the request's object, and returns what gets snapshotted.
fn run(name: &str, bindings: Bindings) -> Golden {
    let body = fixture(name);
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let reviewed = review(&body, &move |ns: &str, _sa: &str, _pod: &Pod| {
        assert_eq!(
            ns, bindings.namespace,
            "bindings asked for the request's namespace"
        );
        bindings.clone()
    })
    .unwrap();
    let response = reviewed.response.clone();
    let uid = request
        .pointer("/request/uid")
        .and_then(|v| v.as_str())
        .unwrap();
    assert_eq!(response.uid, uid, "the UID is echoed");
    let patch: serde_json::Value = match &response.patch {
        Some(bytes) => serde_json::from_slice(bytes).unwrap(),
        None => serde_json::Value::Array(Vec::new()),
    };
    let mut object = request.pointer("/request/object").cloned().unwrap();
    let ops: json_patch::Patch = serde_json::from_value(patch.clone()).unwrap();
    json_patch::patch(&mut object, &ops).expect("the patch applies to the request's object");
    let trace = match &reviewed.decision {
        Decision::Admitted { trace, .. } => trace.to_string(),
        Decision::Denied(denial) => denial.trace.to_string(),
        Decision::Ignored { operation } => format!("ignored {operation}"),
    };
    Golden {
        allowed: response.allowed,
        message: response.message.clone(),
        warnings: Some(response.warnings.clone()).filter(|w| !w.is_empty()),
        patch,
        trace: trace.lines().map(str::to_owned).collect(),
    }
}

fn snapshot(name: &str, bindings: Bindings) -> Golden {
    let golden = run(name, bindings);
    insta::assert_json_snapshot!(name, golden);
    golden
}

fn world() -> World {
    World::new()
}

#[test]
fn the_real_eks_sample_lacks_resource_and_is_malformed() {
    let body = fixture("01-aws-eks-pod-identity-webhook_hack_request");
    let err = review(&body, &|_: &str, _: &str, _: &Pod| world().bindings()).unwrap_err();
    assert!(matches!(err, ReviewError::Parse(_)), "{err}");
    assert!(err.to_string().contains("resource"), "{err}");
}

#[test]
fn the_real_kubewarden_sample_is_a_bare_request_and_is_malformed() {
    let body = fixture("03-kubewarden-user-group-psp-policy_pod_creation_init_container");
    let err = review(&body, &|_: &str, _: &str, _: &Pod| world().bindings()).unwrap_err();
    assert!(
        matches!(err, ReviewError::Parse(_) | ReviewError::NoRequest),
        "{err}"
    );
}

#[test]
fn the_eks_sample_gets_an_aws_role_for_its_default_service_account() {
    let mut b = world()
        .policy(AccessPolicy::test("app").for_sa("default").aws_role("app"))
        .bindings();
    b.namespace = "default".to_owned();
    let g = snapshot("eks-sample-completed", b);
    assert!(g.allowed);
}

#[test]
fn the_kubewarden_sample_init_container_gets_azure_credentials() {
    let policy = AccessPolicy::test("blob-reader").for_sa("default").azure(
        "/subscriptions/s/resourceGroups/apps/providers/Microsoft.ManagedIdentity/userAssignedIdentities/blob",
        Some("11111111-2222-3333-4444-555555555555"),
    );
    snapshot(
        "kubewarden-sample-wrapped",
        world().policy(policy).bindings(),
    );
}

#[test]
fn every_container_but_the_skipped_one_gets_the_mount_and_env() {
    let g = snapshot(
        "multi-container",
        world()
            .policy(AccessPolicy::test("api").for_sa("api").aws_generated())
            .bindings(),
    );
    let text = g.patch.to_string();
    assert!(text.contains("/spec/containers/1/env"), "{text}");
    assert!(
        !text.contains("/spec/containers/2/"),
        "metrics-exporter is skipped: {text}"
    );
}

#[test]
fn init_containers_and_native_sidecars_get_gcp_credentials() {
    let policy = AccessPolicy::test("bq")
        .for_sa("api")
        .gcp_sa("reader@my-project.iam.gserviceaccount.com");
    let g = snapshot("native-sidecar", world().policy(policy).bindings());
    let text = g.patch.to_string();
    assert!(text.contains("/spec/initContainers/1/env"), "{text}");
}

#[test]
fn existing_env_and_env_from_keys_are_never_overwritten() {
    let policy = AccessPolicy::test("api")
        .for_sa("api")
        .aws_role("legacy")
        .region("eu-west-1");
    let b = world()
        .policy(policy)
        .config_map_keys("aws-settings", &["AWS_ROLE_ARN"])
        .bindings();
    let g = snapshot("existing-env-and-volumes", b);
    let ops = g.patch.as_array().unwrap();
    let at = |prefix: &str| -> String {
        ops.iter()
            .filter(|op| op["path"].as_str().unwrap().starts_with(prefix))
            .map(|op| op.to_string())
            .collect()
    };
    assert!(
        !at("/spec/containers/0/").contains("eu-west-1"),
        "app sets AWS_REGION itself"
    );
    assert!(at("/spec/containers/0/").contains("AWS_ROLE_ARN"));
    assert!(
        !at("/spec/containers/1/").contains("AWS_ROLE_ARN"),
        "batch gets AWS_ROLE_ARN from its ConfigMap"
    );
    assert!(at("/spec/containers/1/").contains("eu-west-1"));
}

#[test]
fn generate_name_pods_get_one_token_file_per_oidc_policy() {
    let b = world()
        .policy(AccessPolicy::test("vault").for_sa("api").oidc("vault"))
        .policy(
            AccessPolicy::test("snowflake")
                .for_sa("api")
                .oidc("https://acme.snowflakecomputing.com"),
        )
        .bindings();
    let g = snapshot("generate-name", b);
    let text = g.patch.to_string();
    assert!(
        text.contains("PASSPORT_OIDC_TOKEN_FILE_SNOWFLAKE"),
        "{text}"
    );
}

#[test]
fn eks_service_account_annotations_work_without_a_policy() {
    let b = world()
        .sa_annotation(
            "eks.amazonaws.com/role-arn",
            "arn:aws:iam::111122223333:role/legacy",
        )
        .sa_annotation("eks.amazonaws.com/sts-regional-endpoints", "true")
        .bindings();
    let g = snapshot("compat-eks", b);
    assert!(
        g.patch.to_string().contains("7200"),
        "the pod's expiration wins"
    );
}

#[test]
fn azure_labelled_pods_work_without_a_policy() {
    let b = world()
        .sa_annotation(
            "azure.workload.identity/client-id",
            "11111111-2222-3333-4444-555555555555",
        )
        .sa_annotation(
            "azure.workload.identity/tenant-id",
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
        )
        .bindings();
    snapshot("compat-azure", b);
}

#[test]
fn azure_expirations_outside_the_webhooks_range_are_refused() {
    let b = world()
        .config(|c| {
            c.compat.azure_tenant_id = Some("72f988bf-86f1-41af-91ab-2d7cd011db47".to_owned())
        })
        .bindings();
    let g = snapshot("compat-azure-bad-expiration", b);
    assert!(!g.allowed);
}

#[test]
fn one_pod_gets_aws_gcp_azure_and_oidc_at_once() {
    let b = world()
        .policy(AccessPolicy::test("s3").for_sa("api").aws_role("s3-reader").region("eu-west-1"))
        .policy(AccessPolicy::test("s3-other").for_sa("api").aws_role("shadowed"))
        .policy(AccessPolicy::test("gcs").for_sa("api").gcp_direct())
        .policy(AccessPolicy::test("blob").for_sa("api").azure(
            "/subscriptions/s/resourceGroups/apps/providers/Microsoft.ManagedIdentity/userAssignedIdentities/blob",
            Some("11111111-2222-3333-4444-555555555555"),
        ))
        .policy(AccessPolicy::test("vault").for_sa("api").oidc("vault"))
        .policy(AccessPolicy::test("other-sa").for_sa("batch").aws_role("batch"))
        .config(|c| c.aws_sts_endpoint = Some("https://sts.eu-west-1.amazonaws.com".to_owned()))
        .bindings();
    let g = snapshot("multi-cloud", b);
    let text = g.patch.to_string();
    assert!(
        !text.contains("shadowed"),
        "one AWS identity per pod: {text}"
    );
    assert!(
        !text.contains("role/passport/batch"),
        "policies for other service accounts do not apply"
    );
}

fn digest_policy() -> AccessPolicy {
    AccessPolicy::test("pinned")
        .for_sa("api")
        .aws_role("pinned")
        .images(&["registry.example.com/payments/"], true)
}

#[test]
fn images_from_allowed_registries_pinned_by_digest_pass() {
    let g = snapshot(
        "condition-images-pass",
        world().policy(digest_policy()).bindings(),
    );
    assert!(g.patch.to_string().contains("AWS_ROLE_ARN"));
}

#[test]
fn an_unpinned_init_image_skips_the_policy_with_a_warning() {
    let g = snapshot(
        "condition-images-fail",
        world().policy(digest_policy()).bindings(),
    );
    assert!(g.allowed);
    assert_eq!(g.patch, serde_json::json!([]));
    assert!(g.warnings.unwrap()[0].contains("busybox"));
}

fn selector_policy() -> AccessPolicy {
    AccessPolicy::test("web")
        .for_sa("api")
        .aws_role("web")
        .pod_selector(labels(&[("app", "web")]))
}

#[test]
fn pods_matching_the_selector_get_credentials() {
    let g = snapshot(
        "condition-selector-pass",
        world().policy(selector_policy()).bindings(),
    );
    assert_ne!(g.patch, serde_json::json!([]));
}

#[test]
fn pods_outside_the_selector_get_none() {
    let g = snapshot(
        "condition-selector-fail",
        world().policy(selector_policy()).bindings(),
    );
    assert_eq!(g.patch, serde_json::json!([]));
}

fn nightly() -> AccessPolicy {
    AccessPolicy::test("nightly")
        .for_sa("api")
        .aws_role("nightly")
        .schedule("Europe/Berlin", &[(&[Weekday::Mon], "22:00", "02:00")])
}

#[test]
fn an_overnight_window_admits_early_tuesday_in_berlin() {
    // 00:30 UTC on Tuesday 2026-12-01 is 01:30 in Berlin: Monday's window, past midnight.
    let g = snapshot(
        "condition-schedule-inside",
        world()
            .policy(nightly())
            .at("2026-12-01T00:30:00Z")
            .bindings(),
    );
    assert_ne!(g.patch, serde_json::json!([]));
}

#[test]
fn outside_the_window_the_policy_is_skipped() {
    let g = snapshot(
        "condition-schedule-outside",
        world()
            .policy(nightly())
            .at("2026-12-01T10:00:00Z")
            .bindings(),
    );
    assert_eq!(g.patch, serde_json::json!([]));
}

#[test]
fn reject_enforcement_refuses_the_pod_naming_policy_and_condition() {
    let policy = AccessPolicy::test("strict")
        .for_sa("api")
        .aws_role("strict")
        .images(&["registry.example.com/"], false)
        .reject();
    let g = snapshot("condition-reject", world().policy(policy).bindings());
    assert!(!g.allowed);
    assert!(
        g.message.contains("payments/strict") && g.message.contains("images"),
        "{}",
        g.message
    );
}

#[test]
fn the_opt_out_annotation_leaves_the_pod_alone() {
    let g = snapshot(
        "opt-out",
        world()
            .policy(AccessPolicy::test("api").for_sa("api").aws_role("x"))
            .bindings(),
    );
    assert_eq!(g.patch, serde_json::json!([]));
}

#[test]
fn a_trust_that_does_not_select_the_namespace_gives_nothing() {
    let b = world()
        .policy_not_admitted(AccessPolicy::test("api").for_sa("api").aws_role("x"))
        .policy_without_trust(
            AccessPolicy::test("dangling")
                .for_sa("api")
                .trust("gone")
                .aws_generated()
                .trust("gone"),
        )
        .bindings();
    let g = snapshot("trust-not-admitted", b);
    assert_eq!(g.patch, serde_json::json!([]));
}

#[test]
fn updates_pass_through_untouched() {
    let g = run(
        "update-ignored",
        world()
            .policy(AccessPolicy::test("api").for_sa("api").aws_role("x"))
            .bindings(),
    );
    assert!(g.allowed);
    assert_eq!(g.patch, serde_json::json!([]));
}

#[test]
fn other_kinds_are_malformed_requests() {
    let err = review(&fixture("not-a-pod"), &|_: &str, _: &str, _: &Pod| {
        world().bindings()
    })
    .unwrap_err();
    assert_eq!(err.reason(), "NotAPod");
}

#[test]
fn garbage_bodies_are_errors_not_panics() {
    for body in [
        &b""[..],
        b"{",
        b"[]",
        b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}",
    ] {
        assert!(review(body, &|_: &str, _: &str, _: &Pod| world().bindings()).is_err());
    }
    // Not UTF-8 (a Latin-1 name): a parse error that says so.
    let err = review(
        b"{\"request\":{\"name\":\"caf\xe9\"}}",
        &|_: &str, _: &str, _: &Pod| world().bindings(),
    )
    .unwrap_err();
    assert_eq!(err.reason(), "Parse");
    assert!(err.to_string().contains("not UTF-8"), "{err}");
    let _ = NS;
}

fn api_pod(containers: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": "p", "namespace": NS },
        "spec": { "serviceAccountName": "api", "containers": containers },
    }))
    .unwrap()
}

fn env_of(pod: &Pod, container: usize) -> Vec<(String, String)> {
    pod.spec.as_ref().unwrap().containers[container]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn generated_role_arns_follow_the_trust_path_and_naming_rule() {
    let b = world()
        .policy(AccessPolicy::test("api").for_sa("api").aws_generated())
        .bindings();
    let m = passport_webhook::mutate(&api_pod(serde_json::json!([{ "name": "app" }])), &b).unwrap();
    let env = env_of(&m.pod, 0);
    assert!(
        env.contains(&(
            "AWS_ROLE_ARN".to_owned(),
            "arn:aws:iam::111122223333:role/passport/prod-payments-api".to_owned()
        )),
        "{env:?}"
    );
}

#[test]
fn a_pod_the_eks_webhook_already_mutated_keeps_its_identity_and_mount() {
    let pod = api_pod(serde_json::json!([{
        "name": "app",
        "env": [
            { "name": "AWS_ROLE_ARN", "value": "arn:aws:iam::111122223333:role/old" },
            { "name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token" },
        ],
        "volumeMounts": [{ "name": "aws-iam-token", "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount" }],
    }]));
    let b = world()
        .policy(AccessPolicy::test("api").for_sa("api").aws_role("new"))
        .bindings();
    let m = passport_webhook::mutate(&pod, &b).unwrap();
    let container = &m.pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        container.volume_mounts.as_ref().unwrap().len(),
        1,
        "no second mount at the same path"
    );
    let env = env_of(&m.pod, 0);
    assert!(
        env.iter().all(|(_, v)| !v.contains("role/passport/new")),
        "{env:?}"
    );
    let trace = m.trace.to_string();
    assert!(trace.contains("already mounts aws-iam-token"), "{trace}");
    assert!(trace.contains("already sets AWS_ROLE_ARN"), "{trace}");
}

#[test]
fn an_azure_policy_without_a_known_client_id_says_so() {
    let policy = AccessPolicy::test("blob").for_sa("api").azure(
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i",
        None,
    );
    let m = passport_webhook::mutate(
        &api_pod(serde_json::json!([{ "name": "app" }])),
        &world().policy(policy).bindings(),
    )
    .unwrap();
    let env = env_of(&m.pod, 0);
    assert!(env.iter().all(|(n, _)| n != "AZURE_CLIENT_ID"), "{env:?}");
    assert!(env.iter().any(|(n, _)| n == "AZURE_TENANT_ID"));
    assert!(m.trace.to_string().contains("client ID is not known yet"));
}

#[test]
fn an_unknown_time_zone_fails_the_schedule_condition() {
    let policy = AccessPolicy::test("x")
        .for_sa("api")
        .aws_role("x")
        .schedule("Mars/Olympus", &[(&[], "00:00", "23:59")]);
    let m = passport_webhook::mutate(
        &api_pod(serde_json::json!([{ "name": "app" }])),
        &world().policy(policy).bindings(),
    )
    .unwrap();
    assert!(m.applied.is_empty());
    assert!(
        m.skipped[0].reason.contains("unknown time zone"),
        "{:?}",
        m.skipped
    );
}

#[test]
fn the_trace_serialises_for_the_audit_line() {
    let b = world()
        .policy_not_admitted(AccessPolicy::test("api").for_sa("api").aws_role("x"))
        .bindings();
    let m = passport_webhook::mutate(&api_pod(serde_json::json!([{ "name": "app" }])), &b).unwrap();
    let json = serde_json::to_value(&m.trace).unwrap();
    let trust = json
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "trust")
        .unwrap();
    assert_eq!(trust["outcome"], "fail");
    assert_eq!(trust["policy"], "payments/api");
    assert!(
        trust["message"]
            .as_str()
            .unwrap()
            .contains("namespaceSelector")
    );
}

#[test]
fn the_eks_skip_list_also_applies_to_an_aws_access_policy() {
    let mut pod = api_pod(serde_json::json!([{ "name": "app" }, { "name": "istio-proxy" }]));
    pod.metadata.annotations = Some(
        [(
            "eks.amazonaws.com/skip-containers".to_owned(),
            "istio-proxy".to_owned(),
        )]
        .into(),
    );
    let b = world()
        .policy(AccessPolicy::test("api").for_sa("api").aws_role("x"))
        .bindings();
    let m = passport_webhook::mutate(&pod, &b).unwrap();
    assert!(!env_of(&m.pod, 0).is_empty());
    assert!(
        env_of(&m.pod, 1).is_empty(),
        "istio-proxy is skipped for AWS"
    );
}

#[test]
fn an_identity_outside_the_trusts_allowlists_is_never_injected() {
    let pod = api_pod(serde_json::json!([{ "name": "app" }]));
    let injected = |policy: AccessPolicy| {
        let b = world().policy(policy).bindings();
        let m = passport_webhook::mutate(&pod, &b).unwrap();
        (m.applied.clone(), env_of(&m.pod, 0), m.trace.to_string())
    };

    let allowed = "arn:aws:iam::111122223333:role/payments-reader";
    let (applied, env, _) = injected(AccessPolicy::test("api").for_sa("api").aws_arn(allowed));
    assert_eq!(applied, ["payments/api"]);
    assert!(
        env.contains(&("AWS_ROLE_ARN".to_owned(), allowed.to_owned())),
        "{env:?}"
    );

    for (policy, allowlist) in [
        (
            AccessPolicy::test("api")
                .for_sa("api")
                .aws_arn("arn:aws:iam::999999999999:role/admin"),
            "allowedRoleArns",
        ),
        (
            AccessPolicy::test("api")
                .for_sa("api")
                .gcp_sa("owner@another-project.iam.gserviceaccount.com"),
            "allowedServiceAccounts",
        ),
        (
            AccessPolicy::test("api").for_sa("api").azure(
                "/subscriptions/other/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i",
                Some("11111111-2222-3333-4444-555555555555"),
            ),
            "allowedIdentities",
        ),
    ] {
        let (applied, env, trace) = injected(policy);
        assert!(applied.is_empty(), "{allowlist}: {applied:?}");
        assert!(env.is_empty(), "{allowlist}: {env:?}");
        assert!(
            trace.contains(allowlist) && trace.contains("not injected"),
            "the trace names {allowlist}: {trace}"
        );
    }
}
