//! One local stack and one `passport run` process for the whole test binary. The stack runs on
//! a runtime of its own (tests each have theirs); the operator is the real binary, started with
//! nothing but the stack's variables, as a user would start it. Each test works in a namespace
//! and trusts of its own.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::Duration,
};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{
    Api, Client, ResourceExt as _,
    api::{Patch, PatchParams, PostParams},
};
use passport_crds::{AccessPolicy, FederatedTrust};
use passport_e2e::{
    realapi,
    stack::{Stack, StackConfig},
};

/// The operator's `--cluster-name`.
pub const CLUSTER: &str = "e2e";
/// The MutatingWebhookConfiguration whose `caBundle` the operator keeps current.
pub const WEBHOOK_CONFIGURATION: &str = "passport-e2e";
/// The operator's drift-check period in these tests.
pub const RESYNC_SECONDS: u64 = 4;

pub struct Harness {
    pub stack: &'static Stack,
    pub env: Vec<(String, String)>,
    pub metrics_url: String,
    health_addr: String,
    /// `https://127.0.0.1:<port>/mutate`: the operator's webhook.
    pub webhook_url: String,
    webhook_addr: String,
    operator: Mutex<Option<Child>>,
    pidfile: PathBuf,
    resync_seconds: u64,
    /// Tests that count cloud calls take it exclusively; the others share it.
    quiet: tokio::sync::RwLock<()>,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

/// The shared stack and operator, started on first use.
pub fn harness() -> &'static Harness {
    harness_with(RESYNC_SECONDS)
}

/// The same, with the operator's drift-check period (the first caller decides).
pub fn harness_with(resync_seconds: u64) -> &'static Harness {
    HARNESS.get_or_init(|| start(resync_seconds).expect("starting the stack and the operator"))
}

fn start(resync_seconds: u64) -> anyhow::Result<Harness> {
    passport_e2e::tls::install_crypto_provider();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                let _ = tx.send(Err(anyhow::Error::from(error)));
                return;
            }
        };
        runtime.block_on(async move {
            let apiserver = match std::env::var(passport_e2e::cluster::APISERVER_ENV).as_deref() {
                Ok("real") => realapi::Kind::Real,
                _ => realapi::Kind::Emulated,
            };
            let started = async {
                let stack = Stack::start(StackConfig {
                    apiserver,
                    ..StackConfig::default()
                })
                .await?;
                let stack: &'static Stack = Box::leak(Box::new(stack));
                passport_e2e::cluster::install_crds(&stack.apiserver.client().await?).await?;
                anyhow::Ok(stack)
            };
            let _ = tx.send(started.await);
            // The stack serves until the test binary exits.
            std::future::pending::<()>().await;
        });
    });
    let stack = rx.recv()??;
    let env: Vec<(String, String)> = stack
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let health_addr = format!("127.0.0.1:{port}");
    let webhook_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let webhook_addr = format!("127.0.0.1:{webhook_port}");
    let harness = Harness {
        stack,
        env,
        metrics_url: format!("http://{health_addr}/metrics"),
        health_addr,
        webhook_url: format!("https://{webhook_addr}/mutate"),
        webhook_addr,
        operator: Mutex::new(None),
        pidfile: stack.dir().join("operator.pid"),
        resync_seconds,
        quiet: tokio::sync::RwLock::new(()),
    };
    harness.start_operator()?;
    Ok(harness)
}

impl Harness {
    /// Starts `passport run` with the stack's variables. A shell watchdog stops it when the
    /// test binary exits, since the binary never drops its statics.
    pub fn start_operator(&self) -> anyhow::Result<()> {
        let dir = self.stack.dir();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("operator.log"))?;
        let audit = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("audit.log"))?;
        let watchdog = format!(
            r#""$0" "$@" & child=$!; echo $child > '{}'; while kill -0 {} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.2; done; kill $child 2>/dev/null; wait $child"#,
            self.pidfile.display(),
            std::process::id()
        );
        let _ = std::fs::remove_file(&self.pidfile);
        let child = Command::new("sh")
            .arg("-c")
            .arg(watchdog)
            // `make bench` measures the release build it names here.
            .arg(
                std::env::var("PASSPORT_BIN")
                    .unwrap_or_else(|_| env!("CARGO_BIN_EXE_passport").to_owned()),
            )
            .args([
                "run",
                "--cluster-name",
                CLUSTER,
                "--health-addr",
                &self.health_addr,
                "--resync-seconds",
                &self.resync_seconds.to_string(),
                "--webhook-addr",
                &self.webhook_addr,
                "--webhook-configuration",
                WEBHOOK_CONFIGURATION,
            ])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info,passport_operator=debug,kube=warn")
            .stdin(Stdio::null())
            .stdout(audit)
            .stderr(log)
            .spawn()?;
        *self.operator.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        Ok(())
    }

    /// The operator's process ID (for the benchmark's peak RSS).
    #[allow(dead_code)]
    pub fn operator_pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Kills the operator with SIGKILL, as a node failure would, and waits for it to be gone.
    pub fn kill_operator(&self) {
        let pid = std::fs::read_to_string(&self.pidfile).unwrap_or_default();
        let pid = pid.trim();
        if !pid.is_empty() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
        if let Some(mut child) = self
            .operator
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = child.wait();
        }
    }

    pub async fn shared(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.quiet.read().await
    }

    pub async fn exclusive(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.quiet.write().await
    }

    pub async fn client(&self) -> Client {
        self.stack
            .apiserver
            .client()
            .await
            .expect("a client for the stack")
    }

    /// A fresh namespace named after the test, with `extra` labels.
    pub async fn namespace(&self, client: &Client, prefix: &str, extra: &[(&str, &str)]) -> String {
        let name = format!(
            "{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let mut labels: BTreeMap<String, String> = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.insert(
            passport_e2e::cluster::TEST_LABEL.to_owned(),
            "true".to_owned(),
        );
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels}
        }))
        .expect("a namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("creating the namespace");
        name
    }

    /// Service accounts in `namespace`.
    pub async fn service_accounts(&self, client: &Client, namespace: &str, names: &[&str]) {
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
        for name in names {
            let sa: ServiceAccount =
                serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
                    .expect("a service account");
            api.create(&PostParams::default(), &sa)
                .await
                .expect("creating the service account");
        }
    }

    /// The operator's cloud call counter for one cloud (all operations) and access.
    pub async fn calls(&self, cloud: &str, access: &str) -> u64 {
        let text = reqwest::get(&self.metrics_url)
            .await
            .expect("scraping /metrics")
            .text()
            .await
            .expect("the metrics text");
        assert!(
            text.lines()
                .any(|l| l == "# TYPE passport_cloud_calls counter"),
            "no cloud call counter in /metrics:\n{text}"
        );
        text.lines()
            .filter(|l| l.starts_with("passport_cloud_calls_total{"))
            .filter(|l| {
                l.contains(&format!("cloud=\"{cloud}\""))
                    && l.contains(&format!("access=\"{access}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// The audit lines written so far, parsed.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.stack.dir().join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn operator_log(&self) -> String {
        std::fs::read_to_string(self.stack.dir().join("operator.log")).unwrap_or_default()
    }
}

/// Applies a manifest (YAML) of a trust or a policy with server-side apply.
pub async fn apply_trust(client: &Client, yaml: &str) -> FederatedTrust {
    let trust: FederatedTrust = serde_yaml::from_str(yaml).expect("a FederatedTrust");
    Api::<FederatedTrust>::all(client.clone())
        .patch(
            &trust.name_any(),
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&with_type(&trust, "FederatedTrust")),
        )
        .await
        .expect("applying the trust")
}

pub async fn apply_policy(client: &Client, namespace: &str, yaml: &str) -> AccessPolicy {
    let policy: AccessPolicy = serde_yaml::from_str(yaml).expect("an AccessPolicy");
    Api::<AccessPolicy>::namespaced(client.clone(), namespace)
        .patch(
            &policy.name_any(),
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&with_type(&policy, "AccessPolicy")),
        )
        .await
        .expect("applying the policy")
}

fn with_type(object: &impl serde::Serialize, kind: &str) -> serde_json::Value {
    let mut value = serde_json::to_value(object).expect("serializable");
    value["apiVersion"] = "passport.dev/v1alpha1".into();
    value["kind"] = kind.into();
    value
}

/// Waits until `check` holds for the policy, or fails with its last status and the operator log.
pub async fn wait_policy(
    client: &Client,
    namespace: &str,
    name: &str,
    what: &str,
    check: impl Fn(&AccessPolicy) -> bool,
) -> AccessPolicy {
    let api: Api<AccessPolicy> = Api::namespaced(client.clone(), namespace);
    let mut last = None;
    for _ in 0..300 {
        if let Ok(policy) = api.get(name).await {
            if check(&policy) {
                return policy;
            }
            last = Some(policy);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "policy {namespace}/{name} never became {what}; last status: {:#?}\noperator log tail:\n{}",
        last.and_then(|p| p.status),
        tail(&harness().operator_log())
    );
}

pub async fn wait_trust(
    client: &Client,
    name: &str,
    what: &str,
    check: impl Fn(&FederatedTrust) -> bool,
) -> FederatedTrust {
    let api: Api<FederatedTrust> = Api::all(client.clone());
    let mut last = None;
    for _ in 0..300 {
        if let Ok(trust) = api.get(name).await {
            if check(&trust) {
                return trust;
            }
            last = Some(trust);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "trust {name} never became {what}; last status: {:#?}\noperator log tail:\n{}",
        last.and_then(|t| t.status),
        tail(&harness().operator_log())
    );
}

/// Waits until `check` holds (polling), or panics with `what`.
pub async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "{what} never happened\noperator log tail:\n{}",
        tail(&harness().operator_log())
    );
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The status of one condition type, or "absent".
pub fn condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> (String, String, String) {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map_or(("absent".to_owned(), String::new(), String::new()), |c| {
            (c.status.clone(), c.reason.clone(), c.message.clone())
        })
}

pub fn policy_condition(policy: &AccessPolicy, type_: &str) -> (String, String, String) {
    condition(
        policy
            .status
            .as_ref()
            .map_or(&[][..], |s| &s.conditions[..]),
        type_,
    )
}

pub fn trust_condition(trust: &FederatedTrust, type_: &str) -> (String, String, String) {
    condition(
        trust.status.as_ref().map_or(&[][..], |s| &s.conditions[..]),
        type_,
    )
}

pub fn is_ready(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    condition(conditions, "Ready").0 == "True"
}

pub fn policy_ready(policy: &AccessPolicy) -> bool {
    policy.status.as_ref().is_some_and(|s| {
        is_ready(&s.conditions) && s.observed_generation == policy.metadata.generation
    })
}
