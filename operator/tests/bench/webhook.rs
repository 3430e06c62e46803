//! The webhook's benchmark: `POST /mutate` of `passport run` side by side with the null webhook
//! (`passport-null-webhook`: the same runtime, axum-server, rustls and certificate, a handler
//! that reads the review's UID and allows everything with no patch), both loaded by `oha` over
//! HTTPS keep-alive with the same AdmissionReview of a covered pod, at fixed rates and at
//! saturation; each figure three times, round-robin with the baseline, reported as the median
//! of the per-round ratios. A second null webhook (`--read kube`, reading the whole review into
//! kube's types as kube-rs's admission example does) runs in the same rounds, for context: the
//! targets are ratios to the first. Also the RSS of `passport run` as the cluster's service
//! accounts grow.
//!
//! The benchmarked `passport run` is a second replica started here (`--identity bench-webhook`),
//! next to the harness's leader: every replica serves the webhook from its own stores, and this
//! one can be started pinned (`taskset -c 0`, `TOKIO_WORKER_THREADS=1`) with `oha` on the other
//! core (`taskset -c 1`, `--worker-threads 1`); an unpinned run follows, both processes with
//! their default threads. Its audit lines (one per admission, always on) go to /dev/null.
//! Latencies are oha's, corrected for coordinated omission at fixed rates, from the requests
//! that started after the first second (when oha opens its TLS connections).
//!
//! `make bench` runs it at full size (`PASSPORT_BENCH=full`; oha from `.cache/oha`) and writes
//! `bench/results/webhook.json`; `make test` runs a smoke size: a few hundred requests to each
//! server, checking the answers (Passport's carries the AWS patch, the null webhooks' none), and
//! a tiny oha run when oha is installed. Times are recorded, never asserted.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine as _;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams},
};
use passport_crds::AccessPolicy;
use passport_e2e::{aws::ACCOUNT_ID, watched::Watched};
use serde_json::{Value, json};

use crate::{
    harness::{
        CLUSTER, Harness, OPERATOR_NAMESPACE, WEBHOOK_CONFIGURATION, apply_policy, apply_trust,
        harness_with, policy_ready,
    },
    load::{self, round3},
};

const TRUST_LABEL: &str = "e2e.passport.dev/trust";
/// The Secret `passport run` keeps its serving certificate in (its default name).
const TLS_SECRET: &str = "passport-webhook-tls";

/// What one size of the benchmark runs.
struct Size {
    full: bool,
    /// Namespaces the trusts admit, and AccessPolicies in each (the first namespace holds the
    /// pod; its first policy names the pod's service account).
    namespaces: usize,
    policies_per_namespace: usize,
    /// The cluster's service accounts after each step of the memory measurement.
    service_account_steps: Vec<usize>,
    /// Requests to each server checked one by one.
    checked_requests: usize,
    /// oha's figures: `(pinned, fixed rates)`, each also measured at saturation.
    modes: Vec<(bool, Vec<u32>)>,
    rounds: usize,
    /// Seconds of each oha run, and how many at its start are dropped.
    seconds: u64,
    drop_seconds: f64,
    connections: usize,
}

fn size() -> Size {
    if super::scale().name == "full" {
        Size {
            full: true,
            namespaces: 10,
            policies_per_namespace: 10,
            service_account_steps: vec![1_000, 10_000],
            checked_requests: 300,
            modes: vec![(true, vec![1_000, 5_000]), (false, vec![5_000])],
            rounds: 3,
            seconds: 11,
            drop_seconds: 1.0,
            connections: 32,
        }
    } else {
        Size {
            full: false,
            namespaces: 2,
            policies_per_namespace: 2,
            service_account_steps: vec![10, 50],
            checked_requests: 200,
            modes: vec![(true, vec![200])],
            rounds: 1,
            seconds: 2,
            drop_seconds: 0.5,
            connections: 4,
        }
    }
}

/// Starts a process of the benchmark (`<dir>/<name>.log` its standard error), pinned to
/// `pin`'s CPU if given. It is stopped (SIGTERM, then waited for) when dropped, and when the
/// test binary exits (`Watched`).
fn spawn(
    dir: &Path,
    name: &str,
    pin: Option<&str>,
    program: &str,
    args: &[String],
    env: &[(String, String)],
) -> Watched {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let pidfile = dir.join(format!("{name}.pid"));
    // `taskset` execs the program: the ID on file is the program's.
    let (launcher, pinning): (&str, Vec<&str>) = match pin {
        Some(cpu) => ("taskset", vec!["-c", cpu, program]),
        None => (program, Vec::new()),
    };
    Watched::spawn(launcher, pidfile, |command| {
        command
            .args(pinning)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
    })
    .unwrap()
}

/// The process ID of a benchmarked server.
async fn pid_of(process: &Watched) -> u32 {
    process
        .started_pid()
        .await
        .unwrap_or_else(|| panic!("no pid in {}", process.pidfile().display()))
}

fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// One server under test: its process and its `/mutate` URL.
struct Server {
    process: Watched,
    url: String,
    /// A `passport run` replica's `/metrics`.
    metrics: Option<String>,
}

/// A `passport run` replica serving the webhook (not leading: the harness's operator holds the
/// Lease), ready once its stores are filled.
async fn start_passport(h: &Harness, pin: bool, resync: u64) -> Server {
    start_passport_with(h, pin, resync, true).await
}

/// [`start_passport`], with or without the webhook's memo of recent decisions.
async fn start_passport_with(h: &Harness, pin: bool, resync: u64, memo: bool) -> Server {
    let (health, addr) = (free_addr(), free_addr());
    let bin =
        std::env::var("PASSPORT_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_passport").to_owned());
    let args: Vec<String> = [
        "run",
        "--cluster-name",
        CLUSTER,
        "--health-addr",
        &health,
        "--resync-seconds",
        &resync.to_string(),
        "--webhook-addr",
        &addr,
        "--webhook-configuration",
        WEBHOOK_CONFIGURATION,
        "--identity",
        "bench-webhook",
    ]
    .map(str::to_owned)
    .into();
    let mut args = args;
    if !memo {
        args.extend(["--webhook-memo-bytes".to_owned(), "0".to_owned()]);
    }
    let mut env = h.env.clone();
    if pin {
        env.push(("TOKIO_WORKER_THREADS".to_owned(), "1".to_owned()));
    }
    let name = match (pin, memo) {
        (true, true) => "bench-passport-pinned",
        (false, true) => "bench-passport",
        (true, false) => "bench-passport-pinned-without-memo",
        (false, false) => "bench-passport-without-memo",
    };
    let process = spawn(&h.stack.dir(), name, pin.then_some("0"), &bin, &args, &env);
    let ready = format!("http://{health}/readyz");
    let started = Instant::now();
    loop {
        if reqwest::get(&ready)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the benchmarked passport run never became ready; its log:\n{}",
            std::fs::read_to_string(h.stack.dir().join(format!("{name}.log"))).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Server {
        process,
        url: format!("https://{addr}/mutate"),
        metrics: Some(format!("http://{health}/metrics")),
    }
}

/// A null webhook, with `passport run`'s certificate (`tls_dir`), reading the review as
/// `read` says (`uid`: the baseline; `kube`: kube-rs's types).
async fn start_null(
    h: &Harness,
    pin: bool,
    read: &str,
    tls_dir: &Path,
    http: &reqwest::Client,
    body: &[u8],
) -> Server {
    let addr = free_addr();
    let bin = std::env::var("PASSPORT_NULL_WEBHOOK_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_passport-null-webhook").to_owned());
    let args = vec![
        "--addr".to_owned(),
        addr.clone(),
        "--tls-dir".to_owned(),
        tls_dir.display().to_string(),
        "--read".to_owned(),
        read.to_owned(),
    ];
    let env = if pin {
        vec![("TOKIO_WORKER_THREADS".to_owned(), "1".to_owned())]
    } else {
        Vec::new()
    };
    let name = format!("bench-null-{read}{}", if pin { "-pinned" } else { "" });
    let process = spawn(&h.stack.dir(), &name, pin.then_some("0"), &bin, &args, &env);
    let url = format!("https://{addr}/mutate");
    let started = Instant::now();
    while post(http, &url, body).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the null webhook never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Server {
        process,
        url,
        metrics: None,
    }
}

async fn post(http: &reqwest::Client, url: &str, body: &[u8]) -> reqwest::Result<(u16, Value)> {
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

/// Sends `count` reviews and checks every answer: the UID echoed, allowed, and the AWS patch
/// from Passport (none from the null webhook).
async fn check_answers(
    http: &reqwest::Client,
    server: &Server,
    body: &[u8],
    count: usize,
    patched: bool,
) {
    for _ in 0..count {
        let (status, answer) = post(http, &server.url, body).await.unwrap();
        assert_eq!(status, 200, "{answer}");
        let response = &answer["response"];
        assert_eq!(response["uid"], REVIEW_UID, "{answer}");
        assert_eq!(response["allowed"], true, "{answer}");
        match response["patch"].as_str() {
            Some(patch) if patched => {
                let patch = base64::engine::general_purpose::STANDARD
                    .decode(patch)
                    .unwrap();
                let patch = String::from_utf8(patch).unwrap();
                assert!(patch.contains("AWS_ROLE_ARN"), "{patch}");
            }
            None if !patched => {}
            other => panic!("patch {other:?} from {}: {answer}", server.url),
        }
    }
}

/// The lookups in a replica's memo of recent decisions, by result (`hit`, `stale`, `miss`).
async fn memo_lookups(server: &Server) -> Value {
    let url = server.metrics.as_deref().unwrap();
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    let mut lookups = json!({"hit": 0, "stale": 0, "miss": 0});
    for (result, count) in text.lines().filter_map(|line| {
        let rest = line.strip_prefix("passport_webhook_memo_lookups_total{result=\"")?;
        let (result, count) = rest.split_once("\"} ")?;
        Some((result.to_owned(), count.parse::<u64>().ok()?))
    }) {
        lookups[result] = count.into();
    }
    lookups
}

/// The UID of `review.json`.
const REVIEW_UID: &str = "0f9d4c5e-6b1a-4d8e-9c3f-2a7b8e1d5c60";

/// `review.json` (a Deployment's pod of service account `api`, an app and a proxy container,
/// as the API server sends it) in `namespace`, compact as the API server sends it.
fn review_body(namespace: &str) -> Vec<u8> {
    let mut review: Value = serde_json::from_str(include_str!("review.json")).unwrap();
    review["request"]["namespace"] = namespace.into();
    review["request"]["object"]["metadata"]["namespace"] = namespace.into();
    assert_eq!(review["request"]["uid"], REVIEW_UID);
    serde_json::to_vec(&review).unwrap()
}

pub(crate) fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub(crate) fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| (k as f64 / 1024.0 * 10.0).round() / 10.0)
}

/// Waits until the process's RSS holds still (its stores have taken in what the API server
/// sent), then returns it in KiB.
async fn settled_rss_kib(pid: u32) -> Option<u64> {
    let mut last = proc_status_kib(pid, "VmRSS:")?;
    let mut still = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = proc_status_kib(pid, "VmRSS:")?;
        if now.abs_diff(last) * 200 <= last {
            still += 1;
            if still == 3 {
                return Some(now);
            }
        } else {
            still = 0;
        }
        last = now;
    }
    Some(last)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn oha_path() -> Option<PathBuf> {
    let path = std::env::var_os("PASSPORT_OHA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../.cache/oha/bin/oha"
            ))
        });
    path.exists().then_some(path)
}

/// The cluster the benchmark's replica serves: two trusts, `namespaces` x `policies` policies
/// (the first names the pod's service account `api` for an AWS role with an image condition;
/// the others are OIDC policies of other service accounts, which call no cloud).
async fn populate(h: &Harness, client: &Client, id: &str, size: &Size) -> Vec<String> {
    let trust = format!("bench-wh-{id}");
    let vault = format!("bench-wh-{id}-vault");
    let selector = format!("namespaceSelector: {{matchLabels: {{{TRUST_LABEL}: {trust}}}}}");
    apply_trust(
        client,
        &format!("metadata: {{name: {trust}}}\nspec:\n  aws: {{accountId: '{ACCOUNT_ID}'}}\n  {selector}\n"),
    )
    .await;
    apply_trust(
        client,
        &format!("metadata: {{name: {vault}}}\nspec:\n  oidc: {{allowedAudiences: ['vault']}}\n  {selector}\n"),
    )
    .await;
    let mut namespaces = Vec::new();
    for _ in 0..size.namespaces {
        namespaces.push(
            h.namespace(client, "bench-wh", &[(TRUST_LABEL, &trust)])
                .await,
        );
    }
    h.service_accounts(client, &namespaces[0], &["api"]).await;
    apply_policy(
        client,
        &namespaces[0],
        &format!(
            "metadata: {{name: api}}\nspec:\n  trustRef: {{name: {trust}}}\n  serviceAccounts: [api]\n  aws: {{}}\n  conditions:\n    images: {{allowedPrefixes: ['registry.example.com/payments/']}}\n"
        ),
    )
    .await;
    let others: Vec<(String, usize)> = namespaces
        .iter()
        .flat_map(|ns| (0..size.policies_per_namespace).map(move |i| (ns.clone(), i)))
        .filter(|(ns, i)| !(ns == &namespaces[0] && *i == 0))
        .collect();
    futures::stream::iter(others)
        .map(|(ns, i)| {
            let vault = vault.clone();
            async move {
                apply_policy(
                    client,
                    &ns,
                    &format!("metadata: {{name: svc-{i}}}\nspec:\n  trustRef: {{name: {vault}}}\n  serviceAccounts: [svc-{i}]\n  oidc: {{audience: vault}}\n"),
                )
                .await;
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    // Wait until the controllers are done with them, so that the leader is idle under load.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut ready = 0;
        for ns in &namespaces {
            let list = Api::<AccessPolicy>::namespaced(client.clone(), ns)
                .list(&ListParams::default())
                .await
                .unwrap();
            ready += list.items.iter().filter(|p| policy_ready(p)).count();
        }
        if ready == size.namespaces * size.policies_per_namespace {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ready} policies of the benchmark are Ready"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    namespaces
}

/// Deletes the benchmark's policies and waits until the controllers have cleaned them up, so
/// that the converge benchmark that may follow in the same binary counts no call of theirs.
async fn clean_up(client: &Client, namespaces: &[String]) {
    for ns in namespaces {
        let api = Api::<AccessPolicy>::namespaced(client.clone(), ns);
        for policy in api.list(&ListParams::default()).await.unwrap().items {
            let name = policy.metadata.name.unwrap_or_default();
            api.delete(&name, &DeleteParams::default()).await.unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for ns in namespaces {
        let api = Api::<AccessPolicy>::namespaced(client.clone(), ns);
        while !api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
        {
            assert!(
                Instant::now() < deadline,
                "the benchmark's policies were not deleted"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Creates service accounts `sa-<from>`..`sa-<to>` in `namespace`.
async fn create_service_accounts(client: &Client, namespace: &str, from: usize, to: usize) {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    futures::stream::iter(from..to)
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
}

/// The RSS of the benchmarked replica and of the leader after each step of service accounts.
async fn measure_memory(
    client: &Client,
    namespace: &str,
    steps: &[usize],
    replica: u32,
    leader: u32,
) -> Vec<Value> {
    let mut memory = Vec::new();
    let mut created = 0;
    for &step in steps {
        let started = Instant::now();
        create_service_accounts(client, namespace, created, step).await;
        let create_seconds = started.elapsed().as_secs_f64();
        created = step;
        memory.push(json!({
            "serviceAccounts": step,
            "createSeconds": round3(create_seconds),
            "replicaRssMiB": mib(settled_rss_kib(replica).await),
            "leaderRssMiB": mib(settled_rss_kib(leader).await),
        }));
    }
    memory
}

/// `passport run`'s serving certificate, copied for the null webhook, and a client that trusts
/// its CA.
async fn serving_tls(client: &Client, dir: &Path) -> (PathBuf, reqwest::Client) {
    let secret = Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .get(TLS_SECRET)
        .await
        .unwrap();
    let data = secret.data.unwrap();
    let tls_dir = dir.join("tls");
    std::fs::create_dir_all(&tls_dir).unwrap();
    for key in ["tls.crt", "tls.key"] {
        std::fs::write(tls_dir.join(key), &data[key].0).unwrap();
    }
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&data["ca.crt"].0).unwrap())
        .build()
        .unwrap();
    (tls_dir, http)
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_against_a_null_webhook() {
    let scale = super::scale();
    let size = size();
    // A long drift-check period at full size keeps the leader quiet under load (`make bench`
    // runs this test in a process of its own); the smoke run shares the harness with converge.
    let resync = if size.full {
        3600
    } else {
        super::resync_seconds(&scale)
    };
    let h = harness_with(resync);
    let _quiet = h.exclusive().await;
    let client = h.client().await;
    let id = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let load_before = loadavg();
    let dir = h.stack.dir().join(format!("bench-webhook-{id}"));
    std::fs::create_dir_all(&dir).unwrap();

    // The first replica serves the first mode; it lives through the memory steps before.
    let mut passport = start_passport(h, size.modes[0].0, resync).await;
    let leader = h.operator_pid().unwrap();
    let rss = |pid: u32| mib(proc_status_kib(pid, "VmRSS:"));
    let replica_start_rss = rss(pid_of(&passport.process).await);
    let namespaces = populate(h, &client, id, &size).await;
    let sa_namespace = h.namespace(&client, "bench-wh-sa", &[]).await;
    let memory = measure_memory(
        &client,
        &sa_namespace,
        &size.service_account_steps,
        pid_of(&passport.process).await,
        leader,
    )
    .await;

    let body = review_body(&namespaces[0]);
    let body_path = dir.join("review.json");
    std::fs::write(&body_path, &body).unwrap();
    let (tls_dir, http) = serving_tls(&client, &dir).await;
    let oha_path = oha_path();
    assert!(
        oha_path.is_some() || !size.full,
        "oha is not installed: `make bench` installs it into .cache/oha (or set PASSPORT_OHA)"
    );
    let oha_version = oha_path.as_ref().map(|oha| {
        String::from_utf8_lossy(&Command::new(oha).arg("--version").output().unwrap().stdout)
            .trim()
            .to_owned()
    });
    let ticks = String::from_utf8(
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    let (mut runs, mut summary, mut after_load) = (Vec::new(), Vec::new(), Vec::new());
    for (mode, (pin, rates)) in size.modes.iter().enumerate() {
        if mode > 0 {
            drop(passport);
            passport = start_passport(h, *pin, resync).await;
        }
        let null = start_null(h, *pin, "uid", &tls_dir, &http, &body).await;
        let null_kube = start_null(h, *pin, "kube", &tls_dir, &http, &body).await;
        let without_memo = start_passport_with(h, *pin, resync, false).await;
        check_answers(&http, &passport, &body, size.checked_requests, true).await;
        check_answers(&http, &without_memo, &body, size.checked_requests, true).await;
        // The memo answers as a fresh decision would.
        let (with, without) = (
            post(&http, &passport.url, &body).await.unwrap(),
            post(&http, &without_memo.url, &body).await.unwrap(),
        );
        assert_eq!(with, without, "Passport with and without its memo");
        check_answers(&http, &null, &body, size.checked_requests, false).await;
        check_answers(&http, &null_kube, &body, size.checked_requests, false).await;
        let Some(path) = oha_path.as_deref() else {
            eprintln!("oha is not installed (make bench installs it): no load run");
            continue;
        };
        let oha = load::Oha {
            path,
            body: &body_path,
            dir: &dir,
            ticks,
            connections: size.connections,
            seconds: size.seconds,
            drop_seconds: size.drop_seconds,
            rounds: size.rounds,
        };
        let replica = pid_of(&passport.process).await;
        let servers = [
            load::Target {
                name: "null",
                url: &null.url,
                pid: pid_of(&null.process).await,
            },
            load::Target {
                name: "null-kube",
                url: &null_kube.url,
                pid: pid_of(&null_kube.process).await,
            },
            load::Target {
                name: "passport",
                url: &passport.url,
                pid: replica,
            },
            load::Target {
                name: "passport-without-memo",
                url: &without_memo.url,
                pid: pid_of(&without_memo.process).await,
            },
        ];
        let (mode_runs, mode_summary) = oha.measure(*pin, rates, servers).await;
        runs.extend(mode_runs);
        summary.extend(mode_summary);
        after_load.push(json!({
            "pinned": pin,
            "replicaRssMiB": rss(replica),
            "replicaPeakRssMiB": mib(proc_status_kib(replica, "VmHWM:")),
            "memoLookups": memo_lookups(&passport).await,
        }));
    }
    drop(passport);

    let result = json!({
        "benchmark": "webhook",
        "scale": scale.name,
        "command": if size.full { "make bench" } else { "make test (smoke size)" },
        "date": jiff::Timestamp::now().to_string(),
        "build": if std::env::var_os("PASSPORT_BIN").is_some() {
            "release (PASSPORT_BIN, as make bench builds it)"
        } else {
            "debug (the test profile)"
        },
        "machine": {
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "loadAverageBefore": load_before,
            "loadAverageAfter": loadavg(),
            "shared": "other builds may run on the same 2 cores",
        },
        "oha": oha_version,
        "load": {
            "connections": size.connections,
            "seconds": size.seconds,
            "droppedFirstSeconds": size.drop_seconds,
            "latency": "oha's request duration, corrected for coordinated omission at fixed rates (--latency-correction)",
            "pinned": "passport run and the null webhooks on CPU 0 with TOKIO_WORKER_THREADS=1, oha on CPU 1 with --worker-threads 1",
            "unpinned": "no taskset, every process with its default threads",
        },
        "review": {"bytes": body.len(), "containers": 2, "covered": "an AWS policy with an image condition"},
        "cluster": {
            "trusts": 2,
            "namespaces": size.namespaces,
            "policies": size.namespaces * size.policies_per_namespace,
            "serviceAccounts": size.service_account_steps.last().copied().unwrap_or(0) + 1,
        },
        "summary": summary,
        "targets": load::targets(&summary),
        "memory": {
            "replicaRssAtStartMiB": replica_start_rss,
            "steps": memory,
            "replicasAfterLoad": after_load,
            "leaderAfterLoad": {
                "rssMiB": rss(leader),
                "peakRssMiB": mib(proc_status_kib(leader, "VmHWM:")),
            },
        },
        "runs": runs,
    });
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = if size.full {
        format!("{root}/bench/results/webhook.json")
    } else {
        format!("{root}/target/bench-smoke/webhook.json")
    };
    std::fs::create_dir_all(Path::new(&out).parent().unwrap()).unwrap();
    std::fs::write(&out, serde_json::to_string_pretty(&result).unwrap() + "\n").unwrap();
    for part in ["summary", "targets", "memory"] {
        eprintln!("{}", serde_json::to_string_pretty(&result[part]).unwrap());
    }
    clean_up(&client, &namespaces).await;
}
