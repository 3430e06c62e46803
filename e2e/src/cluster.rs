//! Where the e2e tests run: a real cluster named by `PASSPORT_E2E_KUBECONFIG`, a real
//! kube-apiserver started for the test (`PASSPORT_E2E_APISERVER=real`, see [`crate::realapi`]), or
//! the Kubernetes API emulator (the default). Tests written against [`TestCluster`] run unchanged
//! on all three, which is how the emulator's fidelity is checked against the real thing.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use k8s_openapi::{
    api::core::v1::Namespace,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::wait::{await_condition, conditions},
};

use crate::{
    apiserver::{self, ApiServer},
    oidc::ClusterKeys,
    realapi::{self, RealApiServer},
    tls::Ca,
};

/// Set to a kubeconfig path to run the e2e tests against that cluster instead of the emulator.
pub const KUBECONFIG_ENV: &str = "PASSPORT_E2E_KUBECONFIG";
/// `real` starts a real kube-apiserver for each test; `emulated` (the default) the emulator.
pub const APISERVER_ENV: &str = "PASSPORT_E2E_APISERVER";
/// Label on every namespace a test creates, so leftovers are easy to find and delete.
pub const TEST_LABEL: &str = "passport.dev/e2e";

/// A cluster for one test.
pub struct TestCluster {
    client: Client,
    emulator: Option<ApiServer>,
    real: Option<RealApiServer>,
}

impl TestCluster {
    /// Connects to `PASSPORT_E2E_KUBECONFIG` when set, else starts a fresh real API server
    /// (`PASSPORT_E2E_APISERVER=real`) or emulator.
    pub async fn connect() -> anyhow::Result<Self> {
        crate::tls::install_crypto_provider();
        match std::env::var_os(KUBECONFIG_ENV) {
            Some(path) => {
                let config = kube_config(Path::new(&path))
                    .await
                    .with_context(|| format!("{KUBECONFIG_ENV}={}", path.display()))?;
                Ok(Self {
                    client: Client::try_from(config)?,
                    emulator: None,
                    real: None,
                })
            }
            None => Self::fresh().await,
        }
    }

    /// A fresh API server of the test's own, never a shared cluster: the real kube-apiserver when
    /// `PASSPORT_E2E_APISERVER=real`, else the emulator. For tests that use fixed names or
    /// cluster-wide state.
    pub async fn fresh() -> anyhow::Result<Self> {
        crate::tls::install_crypto_provider();
        if wants_real_apiserver()? {
            let real = RealApiServer::start(realapi::Config::default()).await?;
            return Ok(Self {
                client: real.client().await?,
                emulator: None,
                real: Some(real),
            });
        }
        let emulator = ApiServer::start(apiserver::Config::default()).await?;
        Ok(Self {
            client: emulator.client().await?,
            emulator: Some(emulator),
            real: None,
        })
    }

    /// The URL of the API server and service-account issuer, for a fresh server.
    pub fn server_url(&self) -> Option<String> {
        match (&self.emulator, &self.real) {
            (Some(emulator), _) => Some(emulator.url()),
            (_, Some(real)) => Some(real.url().to_owned()),
            _ => None,
        }
    }

    /// The CA (PEM) of a fresh server's serving certificate.
    pub fn ca_pem(&self) -> Option<&str> {
        match (&self.emulator, &self.real) {
            (Some(emulator), _) => Some(emulator.ca_pem()),
            (_, Some(real)) => Some(real.ca_pem()),
            _ => None,
        }
    }

    /// A fresh server's folder (for files a test writes beside it).
    pub fn dir(&self) -> Option<&std::path::Path> {
        match (&self.emulator, &self.real) {
            (Some(emulator), _) => Some(emulator.dir()),
            (_, Some(real)) => Some(real.dir()),
            _ => None,
        }
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Whether this is a real API server (a cluster or the one started here), not the emulator.
    pub fn is_real(&self) -> bool {
        self.emulator.is_none()
    }

    /// The real API server started for the test, when there is one.
    pub fn real_apiserver(&self) -> Option<&RealApiServer> {
        self.real.as_ref()
    }

    /// The emulator, when the test runs on it.
    pub fn emulator(&self) -> Option<&ApiServer> {
        self.emulator.as_ref()
    }

    /// Creates a namespace of its own for the test (`<prefix>-<random>`), labelled
    /// [`TEST_LABEL`]. Delete it with [`TestCluster::delete_namespace`].
    pub async fn namespace(&self, prefix: &str) -> anyhow::Result<String> {
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "generateName": format!("{prefix}-"), "labels": { TEST_LABEL: "true" } }
        }))?;
        let created = Api::<Namespace>::all(self.client())
            .create(&PostParams::default(), &namespace)
            .await
            .context("creating the test namespace")?;
        Ok(created.name_any())
    }

    pub async fn delete_namespace(&self, name: &str) -> anyhow::Result<()> {
        Api::<Namespace>::all(self.client())
            .delete(name, &DeleteParams::default())
            .await?;
        Ok(())
    }

    /// Server-side applies Passport's CRDs, as generated from the types, and waits until the API
    /// server serves them.
    pub async fn install_crds(&self) -> anyhow::Result<()> {
        install_crds(&self.client()).await
    }
}

/// The client configuration of a kubeconfig file's current context.
pub async fn kube_config(path: &Path) -> anyhow::Result<kube::Config> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?)
}

/// A cluster the stack does not start (`PASSPORT_E2E_KUBECONFIG`), standing where the stack's
/// own API server would: clients use the given kubeconfig as it is, and the fakes read the
/// cluster's issuer keys through its API server ([`ClusterKeys`]). The stack's folder holds
/// `ca.crt`: the stack CA, then the CA of the kubeconfig's cluster, so that clients of
/// `PASSPORT_CA_BUNDLE` trust the fakes and the cluster's own certificates (an issuer served by
/// the API server uses them).
pub struct ExternalCluster {
    kubeconfig: PathBuf,
    /// Boxed: a client configuration is large beside the other API servers' handles.
    config: Box<kube::Config>,
    dir: PathBuf,
    temporary: bool,
    /// Removes the temporary folder when this process exits without dropping this (a test
    /// binary's shared stack lives in a `static`).
    _cleanup: Option<crate::watched::OnExit>,
    keys: ClusterKeys,
}

impl ExternalCluster {
    /// Reads the kubeconfig, writes `ca.crt` into `dir` (a fresh temporary folder, removed on
    /// drop, when None) and reads the cluster's issuer.
    pub async fn open(kubeconfig: &Path, dir: Option<PathBuf>, ca: &Ca) -> anyhow::Result<Self> {
        use base64::Engine as _;
        let config = kube_config(kubeconfig).await?;
        let (dir, temporary) = match dir {
            Some(dir) => (dir, false),
            None => (
                std::env::temp_dir().join(format!("passport-stack-{}", uuid::Uuid::new_v4())),
                true,
            ),
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let cleanup = temporary
            .then(|| crate::watched::on_exit(r#"rm -rf -- "$1""#, &[dir.as_os_str()]))
            .flatten();
        let mut bundle = ca.cert_pem();
        for der in config.root_cert.iter().flatten() {
            let base64 = base64::engine::general_purpose::STANDARD.encode(der);
            bundle.push_str("-----BEGIN CERTIFICATE-----\n");
            for line in base64.as_bytes().chunks(64) {
                bundle.push_str(&String::from_utf8_lossy(line));
                bundle.push('\n');
            }
            bundle.push_str("-----END CERTIFICATE-----\n");
        }
        let ca_path = dir.join("ca.crt");
        std::fs::write(&ca_path, bundle)
            .with_context(|| format!("writing {}", ca_path.display()))?;
        let keys = ClusterKeys::register(config.clone())
            .await
            .context("reading the cluster's service-account issuer")?;
        Ok(Self {
            kubeconfig: kubeconfig.to_owned(),
            config: Box::new(config),
            dir,
            temporary,
            _cleanup: cleanup,
            keys,
        })
    }

    /// The kubeconfig as given.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The stack's folder (`ca.crt`, `stack.env`, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stack CA followed by the cluster's CA.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The cluster's service-account token issuer, as its API server names it.
    pub fn issuer_url(&self) -> &str {
        self.keys.issuer()
    }

    /// The API server's URL in the kubeconfig.
    pub fn server_url(&self) -> String {
        self.config.cluster_url.to_string()
    }

    /// Whether the API server's URL is a loopback address. Needed for the API server to call a
    /// webhook on this machine's loopback, but not enough: kind's loopback URL is a port
    /// forwarded into a container, whose loopback is its own.
    pub fn server_is_loopback(&self) -> bool {
        self.config.cluster_url.host().is_some_and(|host| {
            host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
    }

    pub async fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::try_from(*self.config.clone())?)
    }
}

impl Drop for ExternalCluster {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Applies Passport's CRDs (server-side apply, generated from the API types) and waits until
/// each is `Established`.
pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let params = PatchParams::apply(passport_crds::keys::FIELD_MANAGER).force();
    for (_, crd) in passport_crds::crdgen::crds() {
        let name = crd.name_any();
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .with_context(|| format!("CRD {name} not established within 30 s"))??;
    }
    Ok(())
}

/// Whether [`APISERVER_ENV`] asks for the real API server.
fn wants_real_apiserver() -> anyhow::Result<bool> {
    match std::env::var(APISERVER_ENV).as_deref() {
        Err(_) | Ok("" | "emulated") => Ok(false),
        Ok("real") => Ok(true),
        Ok(other) => anyhow::bail!("{APISERVER_ENV}={other:?}: expected `real` or `emulated`"),
    }
}
