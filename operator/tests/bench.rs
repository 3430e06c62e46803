//! The controllers' benchmark: time and cloud calls for `passport run` to converge N AWS
//! AccessPolicies on the local stack, calls per policy, write calls during a steady-state resync,
//! and the operator's peak RSS with many service accounts and policies.
//!
//! `make bench` runs it at full size (`PASSPORT_BENCH=full`: 100 and 1000 policies, 10 000
//! service accounts) and writes `bench/results/converge.json`; `make test` runs it in a smoke
//! size (5 policies, 50 service accounts) so that it cannot rot, and checks the two counts that
//! do not depend on the machine: at most 3 cloud calls per policy, and no write at steady state.
//! Times and memory are recorded, never asserted. The peak RSS is the whole `passport run`
//! process, its webhook's stores (every service account's metadata) included.
//!
//! The webhook's benchmark (`/mutate` against a null webhook, and memory as service accounts
//! grow) is in `bench/webhook.rs`, on the same harness; the two take the operator in turn.

// The whole crate is test code: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "run/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "bench/load.rs"]
mod load;
#[path = "bench/webhook.rs"]
mod webhook;

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    Api,
    api::{ListParams, PostParams},
};
use passport_crds::AccessPolicy;
use passport_e2e::aws::ACCOUNT_ID;
use serde_json::json;

use harness::{apply_policy, apply_trust, harness_with, trust_condition, wait_trust};

const TRUST_LABEL: &str = "e2e.passport.dev/trust";
/// The drift-check period of the benchmarked operator: long enough not to land inside a
/// convergence (whose calls it would inflate), short enough to observe one steady-state resync.
fn resync_seconds(scale: &Scale) -> u64 {
    if scale.name == "full" { 90 } else { 20 }
}
const POLICIES_PER_NAMESPACE: usize = 100;

struct Scale {
    name: &'static str,
    policies: Vec<usize>,
    service_accounts: usize,
}

fn scale() -> Scale {
    match std::env::var("PASSPORT_BENCH").as_deref() {
        Ok("full") => Scale {
            name: "full",
            policies: vec![100, 1000],
            service_accounts: 10_000,
        },
        _ => Scale {
            name: "smoke",
            policies: vec![5],
            service_accounts: 50,
        },
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn converge_policies_and_hold_a_steady_state() {
    let scale = scale();
    let resync = resync_seconds(&scale);
    let h = harness_with(resync);
    // Alone on the operator: the webhook benchmark's policies would add to the calls counted.
    let _quiet = h.exclusive().await;
    let client = h.client().await;
    let id = &uuid::Uuid::new_v4().simple().to_string()[..6];

    // Service accounts: the webhook keeps their metadata in memory; the controllers never list
    // them.
    let sa_namespace = h.namespace(&client, "bench-sa", &[]).await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &sa_namespace);
    let started = Instant::now();
    futures::stream::iter(0..scale.service_accounts)
        .map(|i| {
            let sas = sas.clone();
            async move {
                let sa: ServiceAccount =
                    serde_json::from_value(json!({"metadata": {"name": format!("sa-{i}")}}))
                        .unwrap();
                sas.create(&PostParams::default(), &sa).await.unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let service_accounts_seconds = started.elapsed().as_secs_f64();

    let trust = format!("bench-{id}");
    apply_trust(
        &client,
        &format!(
            "metadata: {{name: {trust}}}\nspec:\n  aws: {{accountId: '{ACCOUNT_ID}'}}\n  namespaceSelector: {{matchLabels: {{{TRUST_LABEL}: {trust}}}}}\n"
        ),
    )
    .await;
    wait_trust(&client, &trust, "Ready", |t| {
        trust_condition(t, "Ready").0 == "True"
    })
    .await;

    let mut runs = Vec::new();
    for (round, &count) in scale.policies.iter().enumerate() {
        let mut namespaces = Vec::new();
        for _ in 0..count.div_ceil(POLICIES_PER_NAMESPACE) {
            namespaces.push(
                h.namespace(&client, &format!("bench{round}"), &[(TRUST_LABEL, &trust)])
                    .await,
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let calls_before = h.calls("aws", "read").await + h.calls("aws", "write").await;
        let started = Instant::now();
        futures::stream::iter(0..count)
            .map(|i| {
                let client = client.clone();
                let ns = namespaces[i / POLICIES_PER_NAMESPACE].clone();
                let trust = trust.clone();
                async move {
                    apply_policy(
                        &client,
                        &ns,
                        &format!("metadata: {{name: p{i}}}\nspec:\n  trustRef: {{name: {trust}}}\n  serviceAccounts: [app]\n  aws: {{}}\n"),
                    )
                    .await;
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        let mut ready = 0;
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline {
            ready = 0;
            for ns in &namespaces {
                let list = Api::<AccessPolicy>::namespaced(client.clone(), ns)
                    .list(&ListParams::default())
                    .await
                    .unwrap();
                ready += list
                    .items
                    .iter()
                    .filter(|p| harness::policy_ready(p))
                    .count();
            }
            if ready == count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(ready, count, "not every policy converged");
        let converge_seconds = started.elapsed().as_secs_f64();
        // Let the reconciles that the status writes trigger run out before counting.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let calls = h.calls("aws", "read").await + h.calls("aws", "write").await - calls_before;

        // One full resync period at steady state.
        let writes_before = h.calls("aws", "write").await;
        let reads_before = h.calls("aws", "read").await;
        tokio::time::sleep(Duration::from_secs(resync + resync / 2)).await;
        let steady_writes = h.calls("aws", "write").await - writes_before;
        let steady_reads = h.calls("aws", "read").await - reads_before;
        let pid = h.operator_pid();
        let field = |name: &str| pid.and_then(|pid| webhook::proc_status_kib(pid, name));
        runs.push(json!({
            "policies": count,
            "convergeSeconds": converge_seconds,
            "cloudCalls": calls,
            "callsPerPolicy": calls as f64 / count as f64,
            "steadyStateResyncWrites": steady_writes,
            "steadyStateResyncReads": steady_reads,
            "peakRssMiB": webhook::mib(field("VmHWM:")),
            // Where the resident memory is now: the heap and stacks, and the binary's own
            // pages (file-backed, shared with any other process of the same binary).
            "rssAnonMiB": webhook::mib(field("RssAnon:")),
            "rssFileMiB": webhook::mib(field("RssFile:")),
        }));
    }
    let result = json!({
        "benchmark": "converge",
        "scale": scale.name,
        "command": if scale.name == "full" { "make bench" } else { "make test (smoke size)" },
        "build": if std::env::var_os("PASSPORT_BIN").is_some() {
            "release (PASSPORT_BIN, as make bench builds it)"
        } else {
            "debug (the test profile)"
        },
        "cloud": "AWS IAM on the local stack (moto behind the IAM front)",
        "serviceAccounts": scale.service_accounts,
        "serviceAccountsCreateSeconds": service_accounts_seconds,
        "resyncSeconds": resync,
        "runs": runs.clone(),
    });
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = if scale.name == "full" {
        format!("{root}/bench/results/converge.json")
    } else {
        format!("{root}/target/bench-smoke/converge.json")
    };
    std::fs::create_dir_all(std::path::Path::new(&out).parent().unwrap()).unwrap();
    std::fs::write(&out, serde_json::to_string_pretty(&result).unwrap() + "\n").unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&result).unwrap());
    // Checked once the numbers are written, so that a miss still leaves its measurement.
    for run in &runs {
        let (count, calls) = (
            run["policies"].as_u64().unwrap(),
            run["cloudCalls"].as_u64().unwrap(),
        );
        assert!(
            calls as f64 / count as f64 <= 3.0,
            "{calls} cloud calls for {count} policies: over 3 per policy"
        );
        assert_eq!(
            run["steadyStateResyncWrites"], 0,
            "a steady-state resync wrote to AWS"
        );
        assert!(
            run["steadyStateResyncReads"].as_u64().unwrap() > 0,
            "no resync happened in {resync} s"
        );
    }
}
