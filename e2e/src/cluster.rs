//! Where the e2e tests run: a real cluster named by `PASSPORT_E2E_KUBECONFIG`, or the Kubernetes
//! API emulator started for the test. Tests written against [`TestCluster`] run unchanged on
//! both, which is how the emulator's fidelity is checked against the real thing.

use std::{path::PathBuf, time::Duration};

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

use crate::apiserver::{self, ApiServer};

/// Set to a kubeconfig path to run the e2e tests against that cluster instead of the emulator.
pub const KUBECONFIG_ENV: &str = "PASSPORT_E2E_KUBECONFIG";
/// Label on every namespace a test creates, so leftovers are easy to find and delete.
pub const TEST_LABEL: &str = "passport.dev/e2e";

/// A cluster for one test.
pub struct TestCluster {
    client: Client,
    emulator: Option<ApiServer>,
}

impl TestCluster {
    /// Connects to `PASSPORT_E2E_KUBECONFIG` when set, else starts a fresh emulator.
    pub async fn connect() -> anyhow::Result<Self> {
        crate::tls::install_crypto_provider();
        match std::env::var_os(KUBECONFIG_ENV) {
            Some(path) => {
                let path = PathBuf::from(path);
                let kubeconfig = kube::config::Kubeconfig::read_from(&path)
                    .with_context(|| format!("reading {KUBECONFIG_ENV}={}", path.display()))?;
                let config =
                    kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
                Ok(Self {
                    client: Client::try_from(config)?,
                    emulator: None,
                })
            }
            None => {
                let emulator = ApiServer::start(apiserver::Config::default()).await?;
                Ok(Self {
                    client: emulator.client().await?,
                    emulator: Some(emulator),
                })
            }
        }
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Whether this is a real cluster rather than the emulator.
    pub fn is_real(&self) -> bool {
        self.emulator.is_none()
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
        let api = Api::<CustomResourceDefinition>::all(self.client());
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
}
