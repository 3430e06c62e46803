//! Resilience: an operator killed mid-reconcile and restarted leaves no duplicate or leaked
//! role; injected 429s and 500s still converge, with backoff rather than a hot loop; a steady
//! state makes zero cloud writes; drift is repaired with an Event and an audit line; Retain
//! leaves the cloud objects.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::{
    Api,
    api::{DeleteParams, ListParams},
};
use passport_crds::{AccessPolicy, naming};
use reqwest::StatusCode;

use crate::{
    aws::{TRUST_LABEL, expected_trust_policy, iam, role_trust_policy, trust_yaml},
    harness::{
        CLUSTER, RESYNC_SECONDS, apply_policy, apply_trust, aws_objects, eventually, harness,
        policy_ready, trust_condition, wait_policy, wait_trust,
    },
};

fn policy_yaml(name: &str, trust: &str) -> String {
    format!(
        "metadata: {{name: {name}}}\nspec:\n  trustRef: {{name: {trust}}}\n  serviceAccounts: [api]\n  aws: {{}}\n"
    )
}

async fn roles_of(ns: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut marker = None;
    loop {
        let out = iam()
            .list_roles()
            .path_prefix("/passport/")
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        names.extend(
            out.roles()
                .iter()
                .map(|r| r.role_name().to_owned())
                .filter(|n| n.contains(ns)),
        );
        if !out.is_truncated() {
            break;
        }
        marker = out.marker().map(str::to_owned);
    }
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_operator_restarts_without_duplicates_or_leaks() {
    let h = harness();
    let _quiet = h.exclusive().await;
    let client = h.client().await;
    let trust = format!("kill-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let ns = h.namespace(&client, "kill", &[(TRUST_LABEL, &trust)]).await;
    apply_trust(&client, &trust_yaml(&trust, "")).await;
    wait_trust(&client, &trust, "Ready", |t| {
        trust_condition(t, "Ready").0 == "True"
    })
    .await;
    // Slow IAM down so that the kill lands in the middle of the reconciles.
    let aws = h.stack.aws.as_ref().unwrap();
    aws.iam_faults().delay_next(6, Duration::from_millis(400));
    let names: Vec<String> = (0..4).map(|i| format!("p{i}")).collect();
    for name in &names {
        apply_policy(&client, &ns, &policy_yaml(name, &trust)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    h.kill_operator();
    aws.iam_faults().clear();
    h.start_operator().unwrap();
    for name in &names {
        wait_policy(&client, &ns, name, "Ready after the restart", policy_ready).await;
    }
    let expected: Vec<String> = {
        let mut v: Vec<String> = names
            .iter()
            .map(|n| naming::aws_role_name(CLUSTER, &ns, n))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        roles_of(&ns).await,
        expected,
        "one role per policy, no duplicates"
    );
    let policies = Api::<AccessPolicy>::namespaced(client.clone(), &ns);
    for name in &names {
        policies
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    eventually("every role's deletion", || async {
        roles_of(&ns).await.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_converge_with_backoff_and_a_steady_state_writes_nothing_until_drift() {
    let h = harness();
    let _quiet = h.exclusive().await;
    let client = h.client().await;
    let trust = format!("faults-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let ns = h
        .namespace(&client, "faults", &[(TRUST_LABEL, &trust)])
        .await;
    apply_trust(&client, &trust_yaml(&trust, "")).await;
    wait_trust(&client, &trust, "Ready", |t| {
        trust_condition(t, "Ready").0 == "True"
    })
    .await;
    let before = h.calls("aws", "read").await + h.calls("aws", "write").await;
    let started = std::time::Instant::now();
    let aws = h.stack.aws.as_ref().unwrap();
    aws.iam_faults().fail_next(3, StatusCode::TOO_MANY_REQUESTS);
    aws.iam_faults()
        .fail_next(2, StatusCode::INTERNAL_SERVER_ERROR);
    apply_policy(&client, &ns, &policy_yaml("api", &trust)).await;
    wait_policy(
        &client,
        &ns,
        "api",
        "Ready despite the faults",
        policy_ready,
    )
    .await;
    assert_eq!(aws.iam_faults().pending(), 0);
    let during = h.calls("aws", "read").await + h.calls("aws", "write").await - before;
    // Five failed attempts plus the few calls of a create, plus the resync reads (about two per
    // resync period) of the other AWS objects that earlier tests left: a hot loop would make
    // hundreds.
    let others = aws_objects(&client).await.saturating_sub(2);
    let resyncs = started.elapsed().as_secs() / RESYNC_SECONDS + 1;
    let ceiling = 20 + others * 2 * resyncs;
    assert!(
        (6..=ceiling).contains(&during),
        "{during} AWS calls to converge (ceiling {ceiling} with {others} other AWS objects)"
    );

    // Steady state: resyncs read, and write nothing.
    let writes = h.calls("aws", "write").await;
    let reads = h.calls("aws", "read").await;
    tokio::time::sleep(Duration::from_secs(2 * RESYNC_SECONDS + 2)).await;
    assert_eq!(
        h.calls("aws", "write").await,
        writes,
        "a steady state wrote to AWS"
    );
    assert!(
        h.calls("aws", "read").await > reads,
        "the resync re-read the cloud"
    );

    // Drift: someone rewrites the role's trust policy; the next resync puts it back.
    let role = naming::aws_role_name(CLUSTER, &ns, "api");
    let foreign = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"}]}"#;
    iam()
        .update_assume_role_policy()
        .role_name(&role)
        .policy_document(foreign)
        .send()
        .await
        .unwrap();
    let expected = expected_trust_policy(&[naming::service_account_subject(&ns, "api")]);
    eventually("the drift's repair", || async {
        role_trust_policy(&role)
            .await
            .is_some_and(|d| d.same_as(&expected))
    })
    .await;
    let arn = format!("arn:aws:iam::123456789012:role/passport/{role}");
    eventually("a drift audit line", || async {
        h.audit().await.iter().any(|l| {
            l["object"] == arn.as_str() && l["drift"] == true && l["operation"] == "update"
        })
    })
    .await;
    let events = Api::<Event>::namespaced(client.clone(), &ns);
    eventually("a DriftRepaired Event", || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("DriftRepaired"))
    })
    .await;
    Api::<AccessPolicy>::namespaced(client.clone(), &ns)
        .delete("api", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the role's deletion", || async {
        role_trust_policy(&role).await.is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retain_leaves_the_cloud_objects_when_a_policy_goes() {
    let h = harness();
    let _shared = h.shared().await;
    let client = h.client().await;
    let trust = format!("retain-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let ns = h
        .namespace(&client, "retain", &[(TRUST_LABEL, &trust)])
        .await;
    apply_trust(&client, &trust_yaml(&trust, "  deletionPolicy: Retain\n")).await;
    wait_trust(&client, &trust, "Ready", |t| {
        trust_condition(t, "Ready").0 == "True"
    })
    .await;
    apply_policy(&client, &ns, &policy_yaml("api", &trust)).await;
    wait_policy(&client, &ns, "api", "Ready", policy_ready).await;
    let role = naming::aws_role_name(CLUSTER, &ns, "api");
    assert!(role_trust_policy(&role).await.is_some());
    let policies = Api::<AccessPolicy>::namespaced(client.clone(), &ns);
    policies
        .delete("api", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the policy's deletion", || async {
        policies.get_opt("api").await.unwrap().is_none()
    })
    .await;
    assert!(
        role_trust_policy(&role).await.is_some(),
        "Retain deleted the role"
    );
    iam().delete_role().role_name(&role).send().await.unwrap();
}
