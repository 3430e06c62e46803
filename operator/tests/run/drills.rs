//! Failure drills (docs/reliability.md): the operator keeps every change through an API-server
//! watch disconnect and a 410 Gone, rides out a cloud outage of minutes with backoff and then
//! converges, and hands the Lease from one replica to another with no double writes. The
//! certificate drill (expiry, then rotation) is `webhook::a_certificate_near_expiry_...`; the
//! killed-operator drill is `resilience::a_killed_operator_...`.
//!
//! `emulator_only::` drills inject faults into the API emulator, which the real kube-apiserver
//! cannot take; `make e2e-real` skips them.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use passport_crds::naming;
use reqwest::StatusCode;

use crate::{
    aws::{TRUST_LABEL, expected_trust_policy, role_trust_policy, trust_yaml},
    harness::{
        CLUSTER, apply_policy, apply_trust, aws_objects, eventually, harness, policy_condition,
        policy_ready, trust_condition, wait_policy, wait_trust,
    },
    webhook::{injected_pod, register},
};

/// A namespace with a Ready AWS trust, service accounts `api` and `worker`, and policy `api`
/// for `api`.
async fn ready_policy(client: &kube::Client, prefix: &str) -> (String, String) {
    let h = harness();
    let trust = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let ns = h.namespace(client, prefix, &[(TRUST_LABEL, &trust)]).await;
    h.service_accounts(client, &ns, &["api", "worker"]).await;
    apply_trust(client, &trust_yaml(&trust, "")).await;
    wait_trust(client, &trust, "Ready", |t| {
        trust_condition(t, "Ready").0 == "True"
    })
    .await;
    apply_policy(client, &ns, &policy(&trust, "api", &["api"])).await;
    wait_policy(client, &ns, "api", "Ready", policy_ready).await;
    (ns, trust)
}

fn policy(trust: &str, name: &str, service_accounts: &[&str]) -> String {
    format!(
        "metadata: {{name: {name}}}\nspec:\n  trustRef: {{name: {trust}}}\n  serviceAccounts: [{}]\n  aws: {{}}\n",
        service_accounts.join(", ")
    )
}

/// Waits until role `name`'s trust policy names exactly these service accounts of `ns`.
async fn role_trusts(ns: &str, policy: &str, service_accounts: &[&str]) {
    let role = naming::aws_role_name(CLUSTER, ns, policy);
    let subjects: Vec<String> = service_accounts
        .iter()
        .map(|sa| naming::service_account_subject(ns, sa))
        .collect();
    let expected = expected_trust_policy(&subjects);
    eventually(&format!("{role} trusting {service_accounts:?}"), || async {
        role_trust_policy(&role)
            .await
            .is_some_and(|d| d.same_as(&expected))
    })
    .await;
}

/// The AWS calls (`access` = read or write) in one replica's `/metrics`.
async fn aws_calls(metrics_url: &str, access: &str) -> f64 {
    let Ok(response) = reqwest::get(metrics_url).await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("passport_cloud_calls_total{"))
        .filter(|l| l.contains("cloud=\"aws\"") && l.contains(&format!("access=\"{access}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_hand_over_the_lease_without_double_writes() {
    let h = harness();
    let _quiet = h.exclusive().await;
    let client = h.client().await;
    let standby = h.start_standby().unwrap();
    eventually(
        "the standby replica is ready (its webhook serves)",
        || async {
            reqwest::get(&standby.ready_url)
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await;

    // While the first replica leads, the standby reconciles nothing and writes nothing.
    let (ns, trust) = ready_policy(&client, "handover").await;
    apply_policy(&client, &ns, &policy(&trust, "api", &["api", "worker"])).await;
    role_trusts(&ns, "api", &["api", "worker"]).await;
    assert_eq!(standby.metric("passport_reconciles_total").await, 0.0);
    assert_eq!(aws_calls(&standby.metrics_url, "write").await, 0.0);

    // A rollout stops the leader: it releases the Lease, and the standby takes over at once
    // instead of after the lease duration.
    let stopped = Instant::now();
    h.stop_operator();
    apply_policy(&client, &ns, &policy(&trust, "api", &["worker"])).await;
    role_trusts(&ns, "api", &["worker"]).await;
    let handed_over = stopped.elapsed();
    assert!(
        handed_over < Duration::from_secs(15),
        "the standby took {handed_over:?} to apply a change after the leader stopped"
    );
    assert!(standby.metric("passport_reconciles_total").await > 0.0);
    // One role, one trust-policy update for the change, and nothing written twice: the
    // standby's writes are exactly the update (its resyncs of everything else write nothing).
    let writes = aws_calls(&standby.metrics_url, "write").await;
    assert!(
        (1.0..=2.0).contains(&writes),
        "{writes} AWS writes by the new leader"
    );

    // The first replica comes back as the standby, and leads again once the other stops.
    h.start_operator().unwrap();
    drop(standby);
    apply_policy(&client, &ns, &policy(&trust, "api", &["api"])).await;
    role_trusts(&ns, "api", &["api"]).await;
    wait_policy(&client, &ns, "api", "Ready", policy_ready).await;
}

/// Drills that inject faults the real API server cannot take.
mod emulator_only {
    use super::*;

    fn emulator() -> &'static passport_e2e::apiserver::ApiServer {
        match &harness().stack.apiserver {
            passport_e2e::realapi::AnyApiServer::Emulated(server) => server,
            _ => {
                panic!("this drill injects faults into the API emulator: run it on the emulator")
            }
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn watch_disconnects_and_410_gone_lose_no_change() {
        let h = harness();
        let _shared = h.shared().await;
        let client = h.client().await;
        register(&client).await;
        let (ns, trust) = ready_policy(&client, "watchcut").await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        // Every watch is cut, then again with the log compacted (a resumed watch gets 410
        // Expired and must list again); each time a change lands right after the cut.
        for (round, compact) in [false, true, false, true].into_iter().enumerate() {
            emulator().disconnect_watches(compact);
            let accounts: &[&str] = if round % 2 == 0 {
                &["api", "worker"]
            } else {
                &["api"]
            };
            apply_policy(&client, &ns, &policy(&trust, "api", accounts)).await;
            role_trusts(&ns, "api", accounts).await;
        }
        // A new policy created right after a compaction is reconciled, and the webhook's
        // stores, relisted, give its pods their credentials.
        emulator().disconnect_watches(true);
        apply_policy(&client, &ns, &policy(&trust, "worker", &["worker"])).await;
        wait_policy(&client, &ns, "worker", "Ready", policy_ready).await;
        assert!(injected_pod(&pods, "after-cut", "worker").await.is_some());
        let log = h.operator_log();
        assert!(!log.contains("panicked"), "{log}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_api_server_going_away_and_back_loses_nothing() {
        let h = harness();
        let _quiet = h.exclusive().await;
        let client = h.client().await;
        let (ns, trust) = ready_policy(&client, "apigone").await;
        let pid = h.operator_pid().expect("the operator runs");
        // Every request fails and every watch is cut for 8 s, as while an API server restarts
        // behind its load balancer: shorter than the Lease's 10 s renew deadline, so the
        // leader keeps it (a longer outage makes it exit and its pod restart, like
        // `a_killed_operator_restarts_without_duplicates_or_leaks`).
        let _outage = emulator()
            .faults()
            .outage(Duration::from_secs(8), StatusCode::SERVICE_UNAVAILABLE);
        emulator().disconnect_watches(true);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(
            std::process::Command::new("kill")
                .args(["-0", &pid.to_string()])
                .status()
                .unwrap()
                .success(),
            "the operator exited during an 8 s API outage:\n{}",
            h.operator_log()
        );
        apply_policy(&client, &ns, &policy(&trust, "api", &["api", "worker"])).await;
        role_trusts(&ns, "api", &["api", "worker"]).await;
        wait_policy(
            &client,
            &ns,
            "api",
            "Ready after the API outage",
            policy_ready,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_cloud_outage_of_minutes_backs_off_then_converges() {
        let h = harness();
        let _quiet = h.exclusive().await;
        let client = h.client().await;
        let (ns, trust) = ready_policy(&client, "outage").await;
        let seconds: u64 = std::env::var("PASSPORT_DRILL_OUTAGE_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120);
        let aws = h.stack.aws.as_ref().unwrap();
        let before = h.calls("aws", "read").await + h.calls("aws", "write").await;
        // Should an assertion below fail, the outage ends with it: the next test of the
        // shared stack must not start inside it.
        let _outage = aws.iam_faults().outage(
            Duration::from_secs(seconds),
            StatusCode::SERVICE_UNAVAILABLE,
        );
        let started = Instant::now();
        // A change during the outage: it cannot be applied, and the condition says why.
        apply_policy(&client, &ns, &policy(&trust, "api", &["api", "worker"])).await;
        let failing = wait_policy(&client, &ns, "api", "CloudSynced=False", |p| {
            policy_condition(p, "CloudSynced").0 == "False"
        })
        .await;
        let (_, reason, message) = policy_condition(&failing, "CloudSynced");
        // The policy's own cloud call fails, or its trust's resync failed first and the policy
        // waits for it; either way the condition names the outage.
        assert!(
            reason == "CloudUnavailable"
                || (reason == "Progressing" && message.contains("Service is unavailable")),
            "{reason}: {message}"
        );
        assert!(aws.iam_faults().in_outage());
        while started.elapsed() < Duration::from_secs(seconds) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let during = h.calls("aws", "read").await + h.calls("aws", "write").await - before;
        // Backoff, not a hot loop: a cloud call is attempted at most 8 times with exponential
        // backoff (about 20 s), then the reconcile fails and waits 15 s; so each AWS object of
        // the stack makes at most 8 attempts per 15 s. A hot loop would make thousands.
        let policies = aws_objects(&client).await;
        let ceiling = policies * 8 * (seconds / 15 + 1);
        assert!(
            during <= ceiling,
            "{during} AWS calls in a {seconds} s outage for {policies} AWS objects (ceiling {ceiling})"
        );
        // Recovery: the change lands, with no duplicate, and the policy is Ready again.
        role_trusts(&ns, "api", &["api", "worker"]).await;
        wait_policy(&client, &ns, "api", "Ready after the outage", policy_ready).await;
        let recovered = started.elapsed();
        assert!(
            recovered < Duration::from_secs(seconds + 40),
            "converged {recovered:?} after a {seconds} s outage began"
        );
        eprintln!(
            "outage drill: {seconds} s outage, {during} AWS calls during it for {policies} AWS objects, converged {:.1} s after it ended",
            (recovered.as_secs_f64() - seconds as f64).max(0.0)
        );
    }
}
