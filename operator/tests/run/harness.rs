//! One local stack and one `passport run` process for the whole test binary. The stack runs on
//! a runtime of its own (tests each have theirs); the operator is the real binary, started with
//! nothing but the stack's variables, as a user would start it. Each test works in a namespace
//! and trusts of its own. With `PASSPORT_E2E_KUBECONFIG` the stack starts no API server: the
//! operator and the tests use that kubeconfig's cluster, with the stack's cloud fakes.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Command,
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
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
    watched::Watched,
};

/// The operator's `--cluster-name`.
pub const CLUSTER: &str = "e2e";
/// The MutatingWebhookConfiguration whose `caBundle` the operator keeps current: the name
/// `config/rbac` allows it to patch.
pub const WEBHOOK_CONFIGURATION: &str = "passport";
/// The operator's namespace (`POD_NAMESPACE`): its Lease and its webhook Secret live there.
pub const OPERATOR_NAMESPACE: &str = "passport-system";
/// Who the operator is on the real API server: the ServiceAccount of `config/rbac`.
pub const OPERATOR_USER: &str = "system:serviceaccount:passport-system:passport";
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
    operator: Mutex<Option<Watched>>,
    /// Where the operator's process ID is written (`Watched`).
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
            let kubeconfig = std::env::var_os(passport_e2e::cluster::KUBECONFIG_ENV)
                .filter(|path| !path.is_empty())
                .map(PathBuf::from);
            let started = async {
                let stack = Stack::start(StackConfig {
                    apiserver,
                    kubeconfig,
                    ..StackConfig::default()
                })
                .await?;
                let stack: &'static Stack = Box::leak(Box::new(stack));
                let client = stack.apiserver.client().await?;
                passport_e2e::cluster::install_crds(&client).await?;
                // On a real API server (the local one or an external cluster) the operator runs
                // as its own ServiceAccount, with exactly the RBAC of `config/verify`
                // (config/rbac plus the token rule), so a missing rule fails a test; on the
                // emulator, which has no RBAC, as the admin.
                let kubeconfig = match &stack.apiserver {
                    passport_e2e::realapi::AnyApiServer::Real(_)
                    | passport_e2e::realapi::AnyApiServer::External(_) => {
                        Some(install_operator_identity(stack).await?)
                    }
                    passport_e2e::realapi::AnyApiServer::Emulated(_) => {
                        let ns: Namespace = serde_json::from_value(serde_json::json!({
                            "metadata": {"name": OPERATOR_NAMESPACE}
                        }))?;
                        Api::<Namespace>::all(client)
                            .patch(
                                OPERATOR_NAMESPACE,
                                &PatchParams::apply("e2e"),
                                &Patch::Apply(&ns),
                            )
                            .await?;
                        None
                    }
                };
                anyhow::Ok((stack, kubeconfig))
            };
            let _ = tx.send(started.await);
            // The stack serves until the test binary exits.
            std::future::pending::<()>().await;
        });
    });
    let (stack, operator_kubeconfig) = rx.recv()??;
    let mut env: Vec<(String, String)> = stack
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.push(("POD_NAMESPACE".to_owned(), OPERATOR_NAMESPACE.to_owned()));
    // On the real API server the operator runs as its own ServiceAccount, with exactly the RBAC
    // of `config/verify` (config/rbac plus the token rule): a missing rule fails a test.
    if let Some(kubeconfig) = operator_kubeconfig {
        env.retain(|(k, _)| k != "KUBECONFIG");
        env.push(("KUBECONFIG".to_owned(), kubeconfig.display().to_string()));
    }
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

/// `kubectl kustomize config/verify`: the objects a cluster admin installs, parsed.
pub fn rendered_install() -> anyhow::Result<Vec<serde_json::Value>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/verify");
    let out = Command::new("kubectl").args(["kustomize", dir]).output()?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value =
            serde_json::to_value(<serde_yaml::Value as serde::Deserialize>::deserialize(doc)?)?;
        if !value.is_null() {
            objects.push(value);
        }
    }
    Ok(objects)
}

/// Installs the operator's Namespace, ServiceAccount and RBAC from the rendered install (not
/// its Deployment or webhook registration: there are no nodes, and the tests register the
/// webhook by URL), then writes a kubeconfig with a token of that ServiceAccount.
async fn install_operator_identity(stack: &Stack) -> anyhow::Result<PathBuf> {
    use k8s_openapi::api::{
        authentication::v1::TokenRequest,
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    };
    async fn apply<K>(api: Api<K>, value: &serde_json::Value) -> anyhow::Result<()>
    where
        K: kube::Resource
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let name = value["metadata"]["name"].as_str().unwrap_or_default();
        api.patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(value),
        )
        .await?;
        Ok(())
    }
    let client = stack.apiserver.client().await?;
    let objects = rendered_install()?;
    let ns = OPERATOR_NAMESPACE;
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ] {
        for object in objects.iter().filter(|o| o["kind"] == kind) {
            let c = client.clone();
            match kind {
                "Namespace" => apply(Api::<Namespace>::all(c), object).await?,
                "ServiceAccount" => apply(Api::<ServiceAccount>::namespaced(c, ns), object).await?,
                "ClusterRole" => apply(Api::<ClusterRole>::all(c), object).await?,
                "ClusterRoleBinding" => apply(Api::<ClusterRoleBinding>::all(c), object).await?,
                "Role" => apply(Api::<Role>::namespaced(c, ns), object).await?,
                _ => apply(Api::<RoleBinding>::namespaced(c, ns), object).await?,
            }
        }
    }
    let request: TokenRequest = serde_json::from_value(serde_json::json!({
        "spec": {"audiences": [], "expirationSeconds": 172800}
    }))?;
    let token = Api::<ServiceAccount>::namespaced(client, ns)
        .create_token_request("passport", &PostParams::default(), &request)
        .await?
        .status
        .and_then(|s| s.token)
        .ok_or_else(|| anyhow::anyhow!("the TokenRequest has no token"))?;
    let mut kubeconfig = kube::config::Kubeconfig::read_from(stack.apiserver.kubeconfig_path())?;
    for user in &mut kubeconfig.auth_infos {
        if let Some(auth) = user.auth_info.as_mut() {
            *auth = kube::config::AuthInfo {
                token: Some(token.clone().into()),
                ..Default::default()
            };
        }
    }
    let path = stack.dir().join("operator.kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&kubeconfig)?)?;
    Ok(path)
}

impl Harness {
    /// The real API server's audit log, parsed (empty on the emulator). An external cluster's
    /// audit log is not readable here: the test that needs it fails.
    pub fn apiserver_audit(&self) -> Vec<serde_json::Value> {
        let server = match &self.stack.apiserver {
            passport_e2e::realapi::AnyApiServer::Real(server) => server,
            passport_e2e::realapi::AnyApiServer::Emulated(_) => return Vec::new(),
            passport_e2e::realapi::AnyApiServer::External(cluster) => panic!(
                "this test reads the API server's audit log, which only the local real \
                 kube-apiserver writes here (passport-kube --audit-log), not the cluster at {}: \
                 run it with PASSPORT_E2E_APISERVER=real and without {}",
                cluster.server_url(),
                passport_e2e::cluster::KUBECONFIG_ENV,
            ),
        };
        std::fs::read_to_string(server.audit_log_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Whether the API server can call a webhook on this machine's loopback, where the operator
    /// serves it: the emulator and the local real kube-apiserver can; an external cluster only
    /// when its API server's URL is a loopback address (also true of kind, whose API server is
    /// in a container: see docs/development.md).
    pub fn cluster_can_reach_loopback(&self) -> bool {
        match &self.stack.apiserver {
            passport_e2e::realapi::AnyApiServer::External(cluster) => cluster.server_is_loopback(),
            _ => true,
        }
    }

    /// Fails the test, naming the limitation, when the API server cannot call the operator's
    /// webhook on this machine's loopback (`what` says what the test needs it for).
    pub fn require_loopback(&self, what: &str) {
        if let passport_e2e::realapi::AnyApiServer::External(cluster) = &self.stack.apiserver {
            assert!(
                self.cluster_can_reach_loopback(),
                "{what} needs the API server to call the operator's webhook at {}, on this \
                 machine's loopback, which the cluster at {} cannot reach: run this test on the \
                 emulator, the local real kube-apiserver or a cluster on this machine's loopback \
                 (docs/development.md#against-a-real-cluster)",
                self.webhook_url,
                cluster.server_url(),
            );
        }
    }

    /// Starts `passport run` with the stack's variables. A shell watchdog stops it when the
    /// test binary exits, since the binary never drops its statics.
    pub fn start_operator(&self) -> anyhow::Result<()> {
        let child = self.spawn_operator(
            "operator",
            &self.health_addr,
            &self.webhook_addr,
            &self.pidfile,
        )?;
        *self.operator.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        Ok(())
    }

    /// Starts a second replica (`<stack dir>/standby.log`, its own ports, the same Lease), for
    /// the leader hand-over drill. It stops when the returned value is dropped.
    pub fn start_standby(&self) -> anyhow::Result<Standby> {
        let free = || -> anyhow::Result<String> {
            Ok(format!(
                "127.0.0.1:{}",
                std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port()
            ))
        };
        let health = free()?;
        let pidfile = self.stack.dir().join("standby.pid");
        let process = self.spawn_operator("standby", &health, &free()?, &pidfile)?;
        Ok(Standby {
            _process: process,
            metrics_url: format!("http://{health}/metrics"),
            ready_url: format!("http://{health}/readyz"),
        })
    }

    fn spawn_operator(
        &self,
        name: &str,
        health_addr: &str,
        webhook_addr: &str,
        pidfile: &std::path::Path,
    ) -> anyhow::Result<Watched> {
        let dir = self.stack.dir();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{name}.log")))?;
        let audit = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("audit.log"))?;
        let program = std::env::var("PASSPORT_BIN")
            // `make bench` measures the release build it names here.
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_passport").to_owned());
        Ok(Watched::spawn(program, pidfile, |command| {
            command
                .args([
                    "run",
                    "--cluster-name",
                    CLUSTER,
                    "--health-addr",
                    health_addr,
                    "--resync-seconds",
                    &self.resync_seconds.to_string(),
                    "--webhook-addr",
                    webhook_addr,
                    "--webhook-configuration",
                    WEBHOOK_CONFIGURATION,
                    "--identity",
                    name,
                ])
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env("RUST_LOG", "info,passport_operator=debug,kube=warn")
                // The key-rotation drill (issuer.rs) waits out one overlap.
                .env("PASSPORT_ISSUER_KEY_OVERLAP_SECONDS", "20")
                .stdout(audit)
                .stderr(log)
        })?)
    }

    /// Stops the operator with SIGTERM, as a rollout would, and waits until it has exited.
    pub fn stop_operator(&self) {
        self.end_operator("-TERM");
    }

    /// The operator's process ID (for the benchmark's peak RSS).
    #[allow(dead_code)]
    pub fn operator_pid(&self) -> Option<u32> {
        self.operator
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()?
            .pid()
    }

    /// Kills the operator with SIGKILL, as a node failure would, and waits for it to be gone.
    pub fn kill_operator(&self) {
        self.end_operator("-KILL");
    }

    fn end_operator(&self, how: &str) {
        if let Some(mut operator) = self
            .operator
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            operator.signal(how);
            operator.wait();
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

    /// The audit lines written so far, parsed, read once the lines written before the call
    /// are on file: the operator writes them from a thread of its own, a moment after they
    /// happen (`passport_operator::audit::GATHER`).
    pub async fn audit(&self) -> Vec<serde_json::Value> {
        tokio::time::sleep(passport_operator::audit::GATHER * 10).await;
        self.audit_lines()
    }

    /// The audit lines once `done` holds for them, failing with them after a minute.
    pub async fn audit_when(
        &self,
        what: &str,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let start = Instant::now();
        loop {
            let lines = self.audit().await;
            if done(&lines) {
                return lines;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no audit line for {what}: {lines:?}"
            );
        }
    }

    fn audit_lines(&self) -> Vec<serde_json::Value> {
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

/// How many AccessPolicies and FederatedTrusts of AWS the cluster holds: each one's resync reads
/// IAM, which tests that count calls must allow for.
pub async fn aws_objects(client: &Client) -> u64 {
    let policies = Api::<AccessPolicy>::all(client.clone())
        .list(&Default::default())
        .await
        .expect("listing AccessPolicies")
        .items
        .iter()
        .filter(|p| p.spec.aws.is_some())
        .count();
    let trusts = Api::<FederatedTrust>::all(client.clone())
        .list(&Default::default())
        .await
        .expect("listing FederatedTrusts")
        .items
        .iter()
        .filter(|t| t.spec.aws.is_some())
        .count();
    (policies + trusts) as u64
}

/// A second `passport run`, stopped (SIGTERM, then waited for) when dropped.
pub struct Standby {
    _process: Watched,
    pub metrics_url: String,
    pub ready_url: String,
}

impl Standby {
    /// One counter or gauge of this replica's `/metrics`, summed over its label sets.
    pub async fn metric(&self, name: &str) -> f64 {
        metric_sum(&self.metrics_url, name).await
    }
}

/// The sum of one metric's samples at `url` (0 when it has none yet).
pub async fn metric_sum(url: &str, name: &str) -> f64 {
    let Ok(response) = reqwest::get(url).await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
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
