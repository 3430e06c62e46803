//! The whole local stack in one call: one CA, the Kubernetes API emulator (or the real
//! kube-apiserver, `StackConfig::apiserver`, or no API server but a cluster's kubeconfig,
//! `StackConfig::kubeconfig`), AWS (moto behind
//! the IAM, STS and S3 fronts), and the GCP and Azure fakes (with Cloud Storage and Blob
//! Storage), seeded with the accounts the samples in `config/samples/` name. Used by
//! `passport-stack` (`make stack`, `make demo`) and by tests.
//!
//! The token-exchange fakes (AWS STS, Google STS, Entra) share one [`IssuerRedirects`]:
//! [`Stack::resolve_issuer_at`] makes all three fetch an issuer's keys from another base URL,
//! such as the bucket an issuer's documents were published to.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context as _;

use crate::{
    apiserver::{self, ApiServer},
    aws::{self, Aws},
    azure::{AzureFake, AzureOptions, IdentitySeed},
    cluster::ExternalCluster,
    gcp::{GcpFake, GcpOptions},
    oidc::IssuerRedirects,
    realapi::{self, AnyApiServer, RealApiServer},
    tls::Ca,
};

/// The GCP project the samples use.
pub const GCP_PROJECT_ID: &str = "my-project";
pub const GCP_PROJECT_NUMBER: &str = "123456789012";
pub const GCP_SERVICE_ACCOUNT: &str = "payments-api@my-project.iam.gserviceaccount.com";
/// The service account Passport itself runs as on the GCP fake; its key file is
/// `gcp-operator-key.json` in the stack folder.
pub const GCP_OPERATOR_SERVICE_ACCOUNT: &str =
    "passport-operator@my-project.iam.gserviceaccount.com";
/// The Azure tenant, subscription and identity the samples use.
pub const AZURE_TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const AZURE_SUBSCRIPTION_ID: &str = "00000000-0000-0000-0000-000000000000";
pub const AZURE_RESOURCE_GROUP: &str = "apps";
pub const AZURE_IDENTITY: &str = "checkout-mi";
pub const AZURE_CLIENT_ID: &str = "6c2a5d7e-1f3b-4a8c-9d0e-2b4f6a8c0e1d";
/// The service principal the operator itself signs in as (client credentials), exported in
/// `stack.env` as `AZURE_CLIENT_ID` / `AZURE_CLIENT_SECRET`.
pub const AZURE_OPERATOR_CLIENT_ID: &str = "9a1f3c5e-7b2d-4e6f-8a0c-1d3e5f7a9b2c";
pub const AZURE_OPERATOR_CLIENT_SECRET: &str = "passport-operator-stack-secret";
/// The Blob Storage account the Azure fake serves (`https://passportdev.blob.core.windows.net`
/// stands for `{PASSPORT_AZURE_BLOB_ENDPOINT}/passportdev`).
pub const AZURE_STORAGE_ACCOUNT: &str = "passportdev";

/// What to start.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// Where the kubeconfig, CA and `stack.env` go; a temporary folder when None.
    pub dir: Option<PathBuf>,
    /// Port of the Kubernetes API server; 0 picks a free one.
    pub api_port: u16,
    /// The emulator (default) or the real kube-apiserver.
    pub apiserver: realapi::Kind,
    /// A cluster to use instead of an API server of the stack's own (`PASSPORT_E2E_KUBECONFIG`):
    /// no API server is started, `api_port` and `apiserver` are ignored, and the fakes read
    /// that cluster's issuer keys through its API server ([`crate::oidc::ClusterKeys`]).
    pub kubeconfig: Option<PathBuf>,
    /// Start moto and the AWS fronts (needs the venv from `e2e/scripts/venv.sh`).
    pub aws: bool,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            dir: None,
            api_port: 0,
            apiserver: realapi::Kind::Emulated,
            kubeconfig: None,
            aws: true,
        }
    }
}

/// A running stack. Dropping it stops every server and moto.
pub struct Stack {
    pub ca: Arc<Ca>,
    pub apiserver: AnyApiServer,
    pub aws: Option<Aws>,
    pub gcp: GcpFake,
    pub azure: AzureFake,
    issuer_redirects: IssuerRedirects,
}

impl Stack {
    pub async fn start(config: StackConfig) -> anyhow::Result<Self> {
        let ca = Arc::new(Ca::new()?);
        let apiserver = match (&config.kubeconfig, config.apiserver) {
            (Some(kubeconfig), _) => AnyApiServer::External(
                ExternalCluster::open(kubeconfig, config.dir.clone(), &ca)
                    .await
                    .with_context(|| format!("using the cluster of {}", kubeconfig.display()))?,
            ),
            (None, realapi::Kind::Emulated) => AnyApiServer::Emulated(
                ApiServer::start(
                    apiserver::Config {
                        dir: config.dir.clone(),
                        port: config.api_port,
                        ca: Some(ca.clone()),
                        ..apiserver::Config::default()
                    }
                    .with_env()?,
                )
                .await
                .context("starting the Kubernetes API emulator")?,
            ),
            (None, realapi::Kind::Real) => AnyApiServer::Real(
                RealApiServer::start(realapi::Config {
                    dir: config.dir.clone(),
                    port: config.api_port,
                    ca: Some(ca.clone()),
                })
                .await
                .context("starting the real kube-apiserver")?,
            ),
        };
        let issuer_redirects = IssuerRedirects::default();
        let aws = if config.aws {
            let options = aws::Options {
                issuer_redirects: issuer_redirects.clone(),
                ..aws::Options::default()
            };
            Some(
                Aws::start_with(&ca, options)
                    .await
                    .context("starting the AWS emulator")?,
            )
        } else {
            None
        };
        let gcp = GcpFake::start(
            GcpOptions::new(ca.clone())
                .project(GCP_PROJECT_ID, GCP_PROJECT_NUMBER)
                .service_account(GCP_SERVICE_ACCOUNT)
                .service_account(GCP_OPERATOR_SERVICE_ACCOUNT)
                .issuer_redirects(issuer_redirects.clone()),
        )
        .await
        .context("starting the GCP emulator")?;
        let mut identity = IdentitySeed::new(
            AZURE_SUBSCRIPTION_ID,
            AZURE_RESOURCE_GROUP,
            AZURE_IDENTITY,
            AZURE_TENANT_ID,
        );
        identity.client_id = AZURE_CLIENT_ID.to_owned();
        let azure = AzureFake::start(
            AzureOptions {
                issuer_redirects: issuer_redirects.clone(),
                ..AzureOptions::new(ca.clone())
            }
            .identity(identity)
            .storage_account(AZURE_STORAGE_ACCOUNT)
            .service_principal(
                AZURE_TENANT_ID,
                AZURE_OPERATOR_CLIENT_ID,
                AZURE_OPERATOR_CLIENT_SECRET,
            ),
        )
        .await
        .context("starting the Azure emulator")?;
        let stack = Self {
            ca,
            apiserver,
            aws,
            gcp,
            azure,
            issuer_redirects,
        };
        // Google application default credentials for Passport: a key of its own service
        // account, which google-cloud-auth turns into self-signed JWTs the fake verifies.
        let key = stack
            .gcp
            .service_account_key(GCP_OPERATOR_SERVICE_ACCOUNT)?;
        let key_file = stack.dir().join(GCP_KEY_FILE);
        std::fs::write(&key_file, serde_json::to_vec_pretty(&key)?)
            .with_context(|| format!("writing {}", key_file.display()))?;
        // Clients that cannot take an extra CA (google-cloud-iam-admin-v1 builds its own
        // client) read the platform roots; SSL_CERT_FILE points them at these plus the CA.
        let roots = stack.dir().join(ROOTS_FILE);
        std::fs::write(
            &roots,
            roots_with(&std::fs::read(stack.apiserver.ca_path())?),
        )
        .with_context(|| format!("writing {}", roots.display()))?;
        let env_file = stack.dir().join("stack.env");
        std::fs::write(&env_file, stack.env_file())
            .with_context(|| format!("writing {}", env_file.display()))?;
        Ok(stack)
    }

    /// From now on the AWS STS front, Google STS and Entra fetch the keys of `issuer` from
    /// `base_url`: discovery at `{base_url}/.well-known/openid-configuration`, then that
    /// document's `jwks_uri`. The document must still name `issuer`. What a CDN or a DNS name in
    /// front of a bucket does for a published issuer (e.g. `base_url` =
    /// `{AWS_ENDPOINT_URL_S3}/{bucket}`).
    pub fn resolve_issuer_at(&self, issuer: &str, base_url: &str) {
        self.issuer_redirects.set(issuer, base_url);
    }

    /// The redirects [`Self::resolve_issuer_at`] sets, shared by the three fakes.
    pub fn issuer_redirects(&self) -> &IssuerRedirects {
        &self.issuer_redirects
    }

    /// Rotates the API server's service-account signing key (emulator only; see
    /// [`AnyApiServer::rotate_signing_key`]) and returns the new key id.
    pub fn rotate_signing_key(&self) -> anyhow::Result<String> {
        self.apiserver.rotate_signing_key()
    }

    /// The folder holding the kubeconfig, the CA and `stack.env`.
    pub fn dir(&self) -> PathBuf {
        self.apiserver.dir().to_path_buf()
    }

    /// Endpoints and settings as environment variables, the way Passport, the cloud SDKs and
    /// kubectl take them.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (
                "KUBECONFIG",
                self.apiserver.kubeconfig_path().display().to_string(),
            ),
            (
                "PASSPORT_STACK_CA",
                self.apiserver.ca_path().display().to_string(),
            ),
            ("PASSPORT_STACK_ISSUER", self.apiserver.issuer_url()),
            // Passport trusts the stack CA for every cloud endpoint on top of the system roots.
            (
                "PASSPORT_CA_BUNDLE",
                self.apiserver.ca_path().display().to_string(),
            ),
        ];
        if let Some(aws) = &self.aws {
            env.extend([
                ("AWS_ENDPOINT_URL_IAM", aws.iam_https_url()),
                ("AWS_ENDPOINT_URL_STS", aws.sts_https_url()),
                // Path-style only (`force_path_style` / `AWS_S3_FORCE_PATH_STYLE`).
                ("AWS_ENDPOINT_URL_S3", aws.s3_https_url()),
                ("PASSPORT_STACK_MOTO", aws.moto_url().to_owned()),
                ("AWS_ACCOUNT_ID", aws::ACCOUNT_ID.to_owned()),
                // What aws-config's default chain reads: moto accepts any static key.
                ("AWS_ACCESS_KEY_ID", aws::sdk::TEST_ACCESS_KEY_ID.to_owned()),
                (
                    "AWS_SECRET_ACCESS_KEY",
                    aws::sdk::TEST_SECRET_ACCESS_KEY.to_owned(),
                ),
                ("AWS_REGION", aws::sdk::REGION.to_owned()),
                // What Passport's webhook writes into pods: the stack's STS front.
                ("PASSPORT_POD_AWS_STS_ENDPOINT", aws.sts_https_url()),
            ]);
        }
        let gcp = self.gcp.https();
        env.extend([
            ("PASSPORT_STACK_GCP", gcp.base.clone()),
            ("PASSPORT_STACK_GCP_STS_TOKEN_URL", gcp.sts_token.clone()),
            ("GCP_PROJECT_ID", GCP_PROJECT_ID.to_owned()),
            ("PASSPORT_GCP_IAM_ENDPOINT", gcp.base.clone()),
            // Where `Verified` exchanges tokens (Google STS, then impersonation).
            ("PASSPORT_GCP_STS_ENDPOINT", gcp.base.clone()),
            ("PASSPORT_GCP_IAMCREDENTIALS_ENDPOINT", gcp.base.clone()),
            (
                "GOOGLE_APPLICATION_CREDENTIALS",
                self.dir().join(GCP_KEY_FILE).display().to_string(),
            ),
            (
                "SSL_CERT_FILE",
                self.dir().join(ROOTS_FILE).display().to_string(),
            ),
            ("GCP_PROJECT_NUMBER", GCP_PROJECT_NUMBER.to_owned()),
            ("PASSPORT_STACK_AZURE_ARM", self.azure.arm_url()),
            ("AZURE_AUTHORITY_HOST", self.azure.authority_url()),
            ("AZURE_TENANT_ID", AZURE_TENANT_ID.to_owned()),
            // What the operator's Azure provider reads: its own service principal and ARM.
            ("AZURE_CLIENT_ID", AZURE_OPERATOR_CLIENT_ID.to_owned()),
            (
                "AZURE_CLIENT_SECRET",
                AZURE_OPERATOR_CLIENT_SECRET.to_owned(),
            ),
            ("PASSPORT_AZURE_ARM_ENDPOINT", self.azure.arm_url()),
            // Cloud Storage, as Google's storage clients take an emulator.
            ("STORAGE_EMULATOR_HOST", self.gcp.storage_url()),
            // Blob Storage, path-style: `{endpoint}/{account}/{container}/{blob}`.
            ("PASSPORT_AZURE_BLOB_ENDPOINT", self.azure.blob_url()),
            (
                "PASSPORT_AZURE_STORAGE_ACCOUNT",
                AZURE_STORAGE_ACCOUNT.to_owned(),
            ),
            // What Passport's webhook writes into pods: the stack's Google STS, IAM Credentials
            // and Entra endpoints.
            ("PASSPORT_POD_GCP_TOKEN_URL", gcp.sts_token.clone()),
            ("PASSPORT_POD_GCP_IAMCREDENTIALS_URL", gcp.base.clone()),
            (
                "PASSPORT_POD_AZURE_AUTHORITY_HOST",
                self.azure.authority_url(),
            ),
        ]);
        env
    }

    /// `stack.env`: the same variables, one `KEY=value` per line, for `source` or `--env-file`.
    pub fn env_file(&self) -> String {
        self.env()
            .iter()
            .map(|(key, value)| format!("{key}={value}\n"))
            .collect()
    }
}

const GCP_KEY_FILE: &str = "gcp-operator-key.json";
const ROOTS_FILE: &str = "ssl-certs.pem";

/// The system's CA bundle (where Debian, Fedora and Alpine keep it) followed by `extra`.
fn roots_with(extra: &[u8]) -> Vec<u8> {
    let mut out = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ]
    .iter()
    .find_map(|path| std::fs::read(path).ok())
    .unwrap_or_default();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(extra);
    out
}
