//! A real Kubernetes control plane for the tests: builds `e2e/kube` (etcd, kube-apiserver and the
//! controllers a node-less cluster has, in one Go binary), starts it on a free loopback port in a
//! folder of its own, waits until it is ready and stops it on drop.
//!
//! The Go build uses the module and build caches under `.cache/go/` in the repository (or
//! `GOMODCACHE`/`GOCACHE` when set), so it is downloaded and compiled once and incremental after.
//! The serving certificate is signed by the given CA (the stack's), so every client that trusts
//! the stack trusts this server, and the cloud fakes can fetch its discovery document and JWKS.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::tls::{Ca, SharedCa};

/// Names a prebuilt `passport-kube` binary; the Go build is skipped when set.
pub const BINARY_ENV: &str = "PASSPORT_KUBE_BIN";
/// The Kubernetes release `e2e/kube/go.mod` builds.
pub const KUBERNETES_VERSION: &str = "v1.37.2";

/// How long a start waits for the API server to be ready before it gives up with the log's tail.
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// How to run the real API server.
#[derive(Clone, Default)]
pub struct Config {
    /// Where its files go (etcd data, keys, `ca.crt`, `kubeconfig`, the log); a fresh temporary
    /// folder, removed on drop, when None.
    pub dir: Option<PathBuf>,
    /// Loopback port; 0 picks a free one.
    pub port: u16,
    /// The CA that signs the serving certificate; a new one when None.
    pub ca: Option<SharedCa>,
}

/// A running control plane. Dropping it stops it (etcd included) and removes its temporary folder.
pub struct RealApiServer {
    child: Mutex<Option<Child>>,
    stdin: Mutex<Option<ChildStdin>>,
    dir: PathBuf,
    temporary: bool,
    url: String,
    ca_pem: String,
}

/// The repository root (this crate lives in `e2e/`).
fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

const AUDIT_LOG: &str = "audit.jsonl";

/// Builds `passport-kube` once per process (incremental in Go's caches) and returns its path.
pub fn binary() -> anyhow::Result<PathBuf> {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    if let Some(path) = std::env::var_os(BINARY_ENV) {
        return Ok(PathBuf::from(path));
    }
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.as_ref() {
        return Ok(path.clone());
    }
    let path = build()?;
    *built = Some(path.clone());
    Ok(path)
}

/// `e2e/kube/build.sh`: `go build` of `e2e/kube` into `.cache/go/bin/passport-kube`.
pub fn build() -> anyhow::Result<PathBuf> {
    let root = repo_root();
    let out = root.join(".cache/go/bin/passport-kube");
    let output = Command::new(root.join("e2e/kube/build.sh"))
        .arg(&out)
        .output()
        .context("running e2e/kube/build.sh (is Go installed?)")?;
    anyhow::ensure!(
        output.status.success(),
        "e2e/kube/build.sh failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(out)
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl RealApiServer {
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        crate::tls::install_crypto_provider();
        let binary = tokio::task::spawn_blocking(binary).await??;
        let ca = match &config.ca {
            Some(ca) => ca.clone(),
            None => Arc::new(Ca::new()?),
        };
        let (dir, temporary) = match &config.dir {
            Some(dir) => (dir.clone(), false),
            None => (
                std::env::temp_dir().join(format!("passport-kube-{}", uuid::Uuid::new_v4())),
                true,
            ),
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = match config.port {
            0 => free_port()?,
            port => port,
        };
        let ca_pem = ca.cert_pem();
        let serving = ca.issue(&["localhost", "127.0.0.1"])?;
        let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };
        let ca_path = write("ca.crt", &ca_pem)?;
        let cert_path = write("serving.crt", &serving.cert_pem)?;
        let key_path = write("serving.key", &serving.key_pem)?;
        let log_path = dir.join("passport-kube.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut command = Command::new(&binary);
        command
            .arg(format!("--dir={}", dir.display()))
            .arg(format!("--secure-port={port}"))
            .arg(format!("--ca-file={}", ca_path.display()))
            .arg(format!("--cert-file={}", cert_path.display()))
            .arg(format!("--key-file={}", key_path.display()))
            .arg(format!("--ready-timeout={}s", READY_TIMEOUT.as_secs()))
            .arg(format!("--audit-log={}", dir.join(AUDIT_LOG).display()))
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log);
        if temporary {
            // Lets the binary clean up after itself when this process dies without dropping us.
            command.arg("--cleanup");
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdin = child.stdin.take();
        let server = Self {
            child: Mutex::new(Some(child)),
            stdin: Mutex::new(stdin),
            dir,
            temporary,
            url: format!("https://127.0.0.1:{port}"),
            ca_pem,
        };
        server.wait_ready(&log_path).await?;
        Ok(server)
    }

    /// Polls `/readyz` (anonymously, as any client may) until it answers 200 and the binary has
    /// written its `ready` marker (its controllers run), or fails with the log's tail.
    async fn wait_ready(&self, log_path: &Path) -> anyhow::Result<()> {
        let http = crate::tls::client_trusting(&self.ca_pem)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.exited()? {
                anyhow::bail!(
                    "passport-kube exited ({status}) before it was ready:\n{}",
                    log_tail(log_path)
                );
            }
            let last = match http.get(format!("{}/readyz", self.url)).send().await {
                Ok(response) if response.status().is_success() => {
                    if self.dir.join("ready").exists() {
                        return Ok(());
                    }
                    "/readyz is 200, controllers not ready yet".to_owned()
                }
                Ok(response) => format!("/readyz answered {}", response.status()),
                Err(err) => err.to_string(),
            };
            if Instant::now() > deadline {
                anyhow::bail!(
                    "passport-kube not ready within {} s ({last}):\n{}",
                    READY_TIMEOUT.as_secs(),
                    log_tail(log_path)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn exited(&self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        match child.as_mut() {
            Some(child) => Ok(child.try_wait()?),
            None => Ok(None),
        }
    }

    /// `https://127.0.0.1:PORT`: the API server, and the service-account token issuer.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The folder holding `ca.crt`, `kubeconfig` and the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A kubeconfig for an admin (a bearer token in `system:masters`).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The API server's log (kube-apiserver, the controllers and etcd).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("passport-kube.log")
    }

    /// The API server's audit log: one JSON line per request (Metadata level), for tests that
    /// check who did what, such as the operator's RBAC test.
    pub fn audit_log_path(&self) -> PathBuf {
        self.dir.join(AUDIT_LOG)
    }

    /// The CA certificate (PEM) that the serving certificate chains to.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A kube client for the admin, configured from the written kubeconfig.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig_path())?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Stops the control plane: closing its stdin asks for a graceful shutdown; it is killed
    /// when that takes longer than a few seconds. Also done on drop.
    pub fn stop(&self) {
        if let Some(mut stdin) = self.stdin.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stdin.flush();
        }
        let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for RealApiServer {
    fn drop(&mut self) {
        self.stop();
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Which API server a stack or test runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// The Kubernetes API emulator in `e2e/src/apiserver` (fast; no RBAC).
    #[default]
    Emulated,
    /// The real kube-apiserver built from `e2e/kube`.
    Real,
}

/// The emulator, the real API server or a cluster the stack does not run, behind what the
/// stack needs of each.
pub enum AnyApiServer {
    Emulated(crate::apiserver::ApiServer),
    Real(RealApiServer),
    External(crate::cluster::ExternalCluster),
}

impl AnyApiServer {
    pub fn dir(&self) -> &Path {
        match self {
            Self::Emulated(server) => server.dir(),
            Self::Real(server) => server.dir(),
            Self::External(cluster) => cluster.dir(),
        }
    }

    pub fn ca_path(&self) -> PathBuf {
        match self {
            Self::Emulated(server) => server.ca_path(),
            Self::Real(server) => server.ca_path(),
            Self::External(cluster) => cluster.ca_path(),
        }
    }

    pub fn kubeconfig_path(&self) -> PathBuf {
        match self {
            Self::Emulated(server) => server.kubeconfig_path(),
            Self::Real(server) => server.kubeconfig_path(),
            Self::External(cluster) => cluster.kubeconfig_path().to_owned(),
        }
    }

    /// The service-account token issuer: the local servers serve discovery and JWKS at their
    /// own URL; an external cluster's is what its API server names.
    pub fn issuer_url(&self) -> String {
        match self {
            Self::Emulated(server) => server.issuer().url().to_owned(),
            Self::Real(server) => server.url().to_owned(),
            Self::External(cluster) => cluster.issuer_url().to_owned(),
        }
    }

    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        match self {
            Self::Emulated(server) => server.client().await,
            Self::Real(server) => server.client().await,
            Self::External(cluster) => cluster.client().await,
        }
    }

    /// Rotates the service-account signing key (see
    /// [`crate::apiserver::ApiServer::rotate_signing_key`]); only the emulator can. The real
    /// kube-apiserver reads `--service-account-signing-key-file` at start, and a cluster the
    /// stack does not run is not the stack's to change.
    pub fn rotate_signing_key(&self) -> anyhow::Result<String> {
        match self {
            Self::Emulated(server) => server.rotate_signing_key(),
            Self::Real(_) => anyhow::bail!(
                "the real kube-apiserver cannot rotate its service-account signing key while it \
                 runs (it reads its key files at start)"
            ),
            Self::External(_) => {
                anyhow::bail!(
                    "the stack cannot rotate the signing key of a cluster it does not run"
                )
            }
        }
    }

    /// The emulator, when this is one (for fault injection and other test hooks).
    pub fn emulator(&self) -> Option<&crate::apiserver::ApiServer> {
        match self {
            Self::Emulated(server) => Some(server),
            Self::Real(_) | Self::External(_) => None,
        }
    }
}
