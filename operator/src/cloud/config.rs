//! Where the providers send their calls and what they trust: the standard endpoints by default,
//! overridable by flags and environment variables for emulators, private endpoints and sovereign
//! clouds. Credentials are not here: each cloud uses its own standard chain (aws-config's chain,
//! Google application default credentials, the Azure environment that azure-identity reads).

use std::path::PathBuf;

use anyhow::Context as _;

use super::retry::Backoff;

/// Cloud endpoints and trust, as `passport run` flags (each also readable from the environment).
#[derive(Clone, Debug, clap::Args)]
pub struct CloudConfig {
    /// Extra CA certificates (PEM) trusted for cloud endpoints, on top of the system roots.
    #[arg(long = "cloud-ca-bundle", env = "PASSPORT_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,

    /// AWS IAM endpoint (default: the partition's global IAM endpoint).
    #[arg(long, env = "AWS_ENDPOINT_URL_IAM")]
    pub aws_iam_endpoint: Option<String>,

    /// S3 endpoint for issuer publishing (`spec.issuer.publish.s3`), e.g. an S3-compatible
    /// store or an emulator; addressing is path-style then.
    #[arg(long, env = "AWS_ENDPOINT_URL_S3")]
    pub aws_s3_endpoint: Option<String>,

    /// Google Cloud Storage endpoint for issuer publishing (`spec.issuer.publish.gcs`);
    /// `STORAGE_EMULATOR_HOST` as Google's storage clients read it.
    #[arg(
        long,
        env = "STORAGE_EMULATOR_HOST",
        default_value = "https://storage.googleapis.com"
    )]
    pub gcs_endpoint: String,

    /// The account's role trust-policy size quota, in characters without whitespace. Passport
    /// refuses a trust policy over it before calling AWS.
    #[arg(long, env = "PASSPORT_AWS_TRUST_POLICY_QUOTA", default_value_t = 2048)]
    pub aws_trust_policy_quota: usize,

    /// Google IAM endpoint, for workload identity pools, providers and service accounts.
    #[arg(
        long,
        env = "PASSPORT_GCP_IAM_ENDPOINT",
        default_value = "https://iam.googleapis.com"
    )]
    pub gcp_iam_endpoint: String,

    /// Workload identity pool and provider writes per project per minute (Google's quota: 60).
    #[arg(long, env = "PASSPORT_GCP_WRITES_PER_MINUTE", default_value_t = 60)]
    pub gcp_writes_per_minute: u32,

    /// Azure Resource Manager endpoint.
    #[arg(
        long,
        env = "PASSPORT_AZURE_ARM_ENDPOINT",
        default_value = "https://management.azure.com"
    )]
    pub azure_arm_endpoint: String,

    /// Backoff of retried cloud calls (not a flag: tests shorten it).
    #[arg(skip)]
    pub backoff: Backoff,
}

impl Default for CloudConfig {
    fn default() -> Self {
        Self {
            ca_bundle: None,
            aws_iam_endpoint: None,
            aws_s3_endpoint: None,
            gcs_endpoint: "https://storage.googleapis.com".to_owned(),
            aws_trust_policy_quota: 2048,
            gcp_iam_endpoint: "https://iam.googleapis.com".to_owned(),
            gcp_writes_per_minute: 60,
            azure_arm_endpoint: "https://management.azure.com".to_owned(),
            backoff: Backoff::default(),
        }
    }
}

impl CloudConfig {
    /// The extra CA bundle's PEM, when one is configured.
    pub fn ca_pem(&self) -> anyhow::Result<Option<Vec<u8>>> {
        self.ca_bundle
            .as_ref()
            .map(|path| std::fs::read(path).with_context(|| format!("reading {}", path.display())))
            .transpose()
    }

    /// A reqwest client for the REST providers that trusts the system roots and the extra CA.
    pub fn http_client(&self) -> anyhow::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .connect_timeout(std::time::Duration::from_secs(10))
            .user_agent(concat!("passport/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = self.ca_pem()? {
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .context("parsing the extra CA bundle")?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        builder.build().context("building the HTTP client")
    }
}
