//! The Kubernetes API emulator: an HTTPS server that `kube::Client`, the `passport` binary and
//! `kubectl` use unchanged through the kubeconfig it writes. See `FIDELITY.md` for the gaps.
//!
//! Start one with `ApiServer::start(Config::default())` (or [`start`]); it listens on a free
//! loopback port (or `Config::port`), writes `ca.crt` and `kubeconfig` into `Config::dir` (a
//! temporary folder removed on drop when unset), and stops when dropped. `client()` gives a
//! `kube::Client` built from that kubeconfig; `issuer()` is the service-account token issuer whose
//! discovery and JWKS the server publishes; `faults()` injects failures. In a cluster, webhook
//! `service` references resolve through DNS; here `Config::service_overrides` (or
//! [`SERVICE_OVERRIDES_ENV`] via `Config::with_env`) says where each service listens.
//!
//! Submodules: `store` (objects, resourceVersion, watch log), `resources` (what is served),
//! `discovery` and `openapi`, `handlers` (routing and writes), `reads` (get and list), `objects` (the write path),
//! `builtins` (built-in kinds' admission and defaults), `gc` (ownerReferences), `patch` and
//! `apply` (server-side apply), `watch`, `crd`, `table` (kubectl printing and metadata-only
//! answers), `token` (TokenRequest and OIDC), `webhooks` (mutating admission), `injected`
//! (fault injection), `meta` (ObjectMeta rules), `protobuf` (kubectl's typed bodies), `selectors` and `status` (error bodies).

mod apply;
mod builtins;
mod crd;
mod discovery;
mod gc;
mod handlers;
mod injected;
mod meta;
mod objects;
mod openapi;
mod patch;
mod protobuf;
mod reads;
mod resources;
mod selectors;
mod status;
mod store;
mod table;
mod token;
mod watch;
mod webhooks;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::Duration,
};

use anyhow::Context as _;
use axum::Router;

pub use status::{ApiError, Cause, GroupResource};

use crate::{
    oidc::Issuer,
    serve::Server,
    tls::{Ca, SharedCa},
};

/// Environment variable with `service_overrides` for the process form:
/// `ns/name=127.0.0.1:8443,other-ns/other=127.0.0.1:9443`.
pub const SERVICE_OVERRIDES_ENV: &str = "PASSPORT_STACK_SERVICE_OVERRIDES";

/// How to run the emulator.
#[derive(Clone)]
pub struct Config {
    /// Where `ca.crt` and `kubeconfig` are written; a fresh temporary folder when None.
    pub dir: Option<PathBuf>,
    /// Loopback port; 0 picks a free one.
    pub port: u16,
    /// The CA that signs the serving certificate; a new one when None. Share the stack's CA so
    /// one bundle trusts every fake.
    pub ca: Option<SharedCa>,
    /// How many watch events are kept; a watch from an older resourceVersion gets 410 Expired.
    pub watch_window: usize,
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK (real: about a minute).
    pub bookmark_interval: Duration,
    /// Where admission webhooks given as `clientConfig.service` are reached: `"ns/name"` ->
    /// loopback address. The TLS name checked is still `name.ns.svc`, as in a cluster.
    pub service_overrides: HashMap<String, SocketAddr>,
    /// The bearer token written into the kubeconfig.
    pub admin_token: String,
    /// Failures and latency to inject into the next calls (also driven over `/_faults`).
    pub faults: crate::faults::Faults,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            dir: None,
            port: 0,
            ca: None,
            watch_window: 10_000,
            bookmark_interval: Duration::from_secs(5),
            service_overrides: HashMap::new(),
            admin_token: "passport-stack-admin".into(),
            faults: crate::faults::Faults::default(),
        }
    }
}

impl Config {
    /// Adds the service overrides from [`SERVICE_OVERRIDES_ENV`], if set.
    pub fn with_env(mut self) -> anyhow::Result<Self> {
        if let Ok(value) = std::env::var(SERVICE_OVERRIDES_ENV) {
            self.service_overrides
                .extend(parse_service_overrides(&value)?);
        }
        Ok(self)
    }
}

/// Parses `ns/name=host:port` pairs separated by commas.
pub fn parse_service_overrides(value: &str) -> anyhow::Result<HashMap<String, SocketAddr>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (service, addr) = pair.split_once('=').with_context(|| {
                format!("{SERVICE_OVERRIDES_ENV}: expected ns/name=addr, got {pair:?}")
            })?;
            let addr = addr
                .parse()
                .with_context(|| format!("{SERVICE_OVERRIDES_ENV}: bad address in {pair:?}"))?;
            Ok((service.trim().to_owned(), addr))
        })
        .collect()
}

/// What the lock protects.
pub(crate) struct Inner {
    store: store::Store,
    registry: resources::Registry,
    ca_pem: String,
}

/// State shared by the handlers.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    config: Config,
    issuer: OnceLock<Issuer>,
    url: OnceLock<String>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn url(&self) -> &str {
        self.url.get().map_or("", String::as_str)
    }
}

/// A running emulator. Dropping it stops the server and removes its temporary folder.
pub struct ApiServer {
    server: Server,
    shared: Arc<Shared>,
    dir: PathBuf,
    temporary: bool,
    /// Removes the temporary folder when this process exits without dropping this (a test
    /// binary's shared stack lives in a `static`).
    _cleanup: Option<crate::watched::OnExit>,
    ca_pem: String,
}

/// Starts the emulator (same as [`ApiServer::start`]).
pub async fn start(config: Config) -> anyhow::Result<ApiServer> {
    ApiServer::start(config).await
}

impl ApiServer {
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        crate::tls::install_crypto_provider();
        let ca = match &config.ca {
            Some(ca) => ca.clone(),
            None => Arc::new(Ca::new()?),
        };
        let ca_pem = ca.cert_pem();
        let (dir, temporary) = match &config.dir {
            Some(dir) => (dir.clone(), false),
            None => (
                std::env::temp_dir().join(format!("passport-apiserver-{}", store::new_uid())),
                true,
            ),
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let cleanup = temporary
            .then(|| crate::watched::on_exit(r#"rm -rf -- "$1""#, &[dir.as_os_str()]))
            .flatten();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                store: store::Store::new(config.watch_window),
                registry: resources::Registry::new(),
                ca_pem: ca_pem.clone(),
            }),
            config: config.clone(),
            issuer: OnceLock::new(),
            url: OnceLock::new(),
        });
        let router = injected::wrap(
            Router::new()
                .route(
                    ROTATE_SIGNING_KEY_PATH,
                    axum::routing::post(rotate_signing_key),
                )
                .fallback(handlers::dispatch)
                .with_state(shared.clone()),
            config.faults.clone(),
        );
        let tls = ca.loopback_server_config().await?;
        let server = Server::start(router, Some(tls), config.port).await?;
        let url = server.url();
        let _ = shared.issuer.set(Issuer::generate(&url)?);
        let _ = shared.url.set(url.clone());
        {
            let mut inner = shared.lock();
            let namespaces = inner
                .registry
                .find("", "v1", "namespaces")
                .cloned()
                .context("namespaces are registered")?;
            for ns in objects::SYSTEM_NAMESPACES {
                let obj = serde_json::json!({ "metadata": { "name": ns } });
                let obj = objects::prepare_create(&inner, &namespaces, None, obj)
                    .map_err(anyhow::Error::from)?;
                objects::commit_create(&mut inner, &namespaces, obj, false)?;
            }
        }
        let this = Self {
            server,
            shared,
            dir,
            temporary,
            _cleanup: cleanup,
            ca_pem,
        };
        std::fs::write(this.ca_path(), &this.ca_pem)
            .with_context(|| format!("writing {}", this.ca_path().display()))?;
        std::fs::write(this.kubeconfig_path(), this.kubeconfig())
            .with_context(|| format!("writing {}", this.kubeconfig_path().display()))?;
        Ok(this)
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The folder holding `ca.crt` and `kubeconfig`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The fault queue: `server.faults().fail_next(1, StatusCode::SERVICE_UNAVAILABLE)`.
    pub fn faults(&self) -> &crate::faults::Faults {
        &self.shared.config.faults
    }

    /// The CA certificate (PEM) that the serving certificate chains to.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The service-account token issuer (its URL is [`Self::url`]).
    pub fn issuer(&self) -> &Issuer {
        // Set in `start` before `Self` exists.
        match self.shared.issuer.get() {
            Some(issuer) => issuer,
            None => unreachable!("the issuer is set when the server starts"),
        }
    }

    /// A kube client configured from the written kubeconfig, exactly as other programs see it.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig_path())?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        Ok(kube::Client::try_from(config)?)
    }

    fn kubeconfig(&self) -> String {
        use base64::Engine as _;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        let config = serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{ "name": "passport-stack",
                "cluster": { "server": self.url(), "certificate-authority-data": ca } }],
            "users": [{ "name": "passport-stack-admin",
                "user": { "token": self.shared.config.admin_token } }],
            "contexts": [{ "name": "passport-stack",
                "context": { "cluster": "passport-stack", "user": "passport-stack-admin", "namespace": "default" } }],
            "current-context": "passport-stack",
            "preferences": {},
        });
        serde_yaml::to_string(&config).unwrap_or_default()
    }

    /// Rotates the service-account signing key and returns the new key id: tokens issued from
    /// now on carry it, and `/openid/v1/jwks` serves only the new key (the old one is dropped
    /// at once, the harsh case for anyone who cached or published the old JWKS). Also
    /// `POST /_signing-key/rotate`. The real kube-apiserver reads its keys at start and cannot
    /// do this while it runs.
    pub fn rotate_signing_key(&self) -> anyhow::Result<String> {
        self.issuer().rotate()
    }

    /// Ends every open watch; with `compact`, resumed watches get 410 Expired (see
    /// `Store::disconnect_watches`). For failure drills.
    pub fn disconnect_watches(&self, compact: bool) {
        self.shared.lock().store.disconnect_watches(compact);
    }

    /// Stops serving (also done on drop).
    pub fn stop(&self) {
        self.server.stop();
    }
}

/// Test-only, absent from kube-apiserver: `POST` rotates the signing key (see
/// [`ApiServer::rotate_signing_key`]) and answers `{"kid": "<new key id>"}`.
pub const ROTATE_SIGNING_KEY_PATH: &str = "/_signing-key/rotate";

async fn rotate_signing_key(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let rotated = match shared.issuer.get() {
        Some(issuer) => issuer.rotate().map_err(|e| e.to_string()),
        None => Err("the issuer is not ready".to_owned()),
    };
    match rotated {
        Ok(kid) => axum::Json(serde_json::json!({ "kid": kid })).into_response(),
        Err(e) => ApiError::internal(format!("rotating the signing key: {e}")).into_response(),
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.server.stop();
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
