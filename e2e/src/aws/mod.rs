//! The local stack's AWS: moto (IAM state) behind an IAM front that adds IAM's checks moto lacks,
//! an STS front that implements `AssumeRoleWithWebIdentity` for real, and an S3 front (a thin
//! path-style proxy to moto's S3). The IAM and STS fronts are served over HTTP and HTTPS, the S3
//! front over HTTPS (stack CA); each can be told to fail or slow down the next calls.

pub mod iam;
pub mod moto;
pub mod query;
pub mod quota;
pub mod s3;
pub mod sdk;
pub mod sts;
pub mod trust;

use anyhow::Context as _;

pub use self::{
    iam::IamFront,
    moto::Moto,
    s3::S3Front,
    sdk::{iam_client, iam_config, sts_client, sts_config},
    sts::StsFront,
};
use crate::{faults::Faults, oidc::IssuerRedirects, serve::Server, tls::Ca};

/// The account moto serves (its default).
pub const ACCOUNT_ID: &str = "123456789012";

/// How to start the AWS piece of the stack.
#[derive(Clone, Debug)]
pub struct Options {
    /// The account's role trust-policy quota (characters, whitespace excluded).
    pub trust_policy_quota: usize,
    /// The client the STS front fetches issuers' discovery documents and JWKS with; `None` means
    /// one that trusts only the stack CA (the stack's own issuers serve with it).
    pub oidc_client: Option<reqwest::Client>,
    /// Where the STS front fetches some issuers' keys instead of at the issuer URL.
    pub issuer_redirects: IssuerRedirects,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            trust_policy_quota: quota::DEFAULT_TRUST_POLICY_QUOTA,
            oidc_client: None,
            issuer_redirects: IssuerRedirects::default(),
        }
    }
}

/// A running AWS emulator: moto, the IAM front and the STS front. Dropping it stops everything.
pub struct Aws {
    // Servers first: they stop before moto does.
    iam_http: Server,
    iam_https: Server,
    sts_http: Server,
    sts_https: Server,
    s3_https: Server,
    iam_faults: Faults,
    sts_faults: Faults,
    s3_faults: Faults,
    moto: Moto,
}

impl Aws {
    /// Starts moto and both fronts with default options.
    pub async fn start(ca: &Ca) -> anyhow::Result<Self> {
        Self::start_with(ca, Options::default()).await
    }

    pub async fn start_with(ca: &Ca, options: Options) -> anyhow::Result<Self> {
        let moto = Moto::start().await.context("starting moto")?;
        let oidc_client = match options.oidc_client {
            Some(client) => client,
            None => ca.client()?,
        };
        let iam_faults = Faults::default();
        let sts_faults = Faults::default();
        let iam = query::aws_shaped_faults(
            crate::faults::wrap(
                IamFront::new(moto.url(), options.trust_policy_quota)?.router(),
                iam_faults.clone(),
            ),
            iam::NAMESPACE,
        );
        let sts = query::aws_shaped_faults(
            crate::faults::wrap(
                StsFront::new(moto.url(), oidc_client, options.issuer_redirects).router(),
                sts_faults.clone(),
            ),
            sts::NAMESPACE,
        );
        let s3_faults = Faults::default();
        let s3 = s3::shaped_faults(crate::faults::wrap(
            S3Front::new(moto.url())?.router(),
            s3_faults.clone(),
        ));
        Ok(Self {
            iam_http: Server::http(iam.clone()).await?,
            iam_https: Server::https(iam, ca.loopback_server_config().await?).await?,
            sts_http: Server::http(sts.clone()).await?,
            sts_https: Server::https(sts, ca.loopback_server_config().await?).await?,
            s3_https: Server::https(s3, ca.loopback_server_config().await?).await?,
            iam_faults,
            sts_faults,
            s3_faults,
            moto,
        })
    }

    /// The IAM endpoint over HTTP (what the operator's `--aws-iam-endpoint` points at).
    pub fn iam_url(&self) -> String {
        self.iam_http.url()
    }

    pub fn iam_https_url(&self) -> String {
        self.iam_https.url()
    }

    /// The STS endpoint over HTTP (`AWS_ENDPOINT_URL_STS` for workloads).
    pub fn sts_url(&self) -> String {
        self.sts_http.url()
    }

    pub fn sts_https_url(&self) -> String {
        self.sts_https.url()
    }

    /// The S3 endpoint over HTTPS, path-style (`{url}/{bucket}/{key}`): `AWS_ENDPOINT_URL_S3`.
    /// Clients must use path-style addressing (`force_path_style`), as with any S3 emulator.
    pub fn s3_https_url(&self) -> String {
        self.s3_https.url()
    }

    /// moto itself, bypassing the IAM front's checks.
    pub fn moto_url(&self) -> &str {
        self.moto.url()
    }

    /// Faults for the IAM front (both schemes).
    pub fn iam_faults(&self) -> &Faults {
        &self.iam_faults
    }

    /// Faults for the STS front (both schemes).
    pub fn sts_faults(&self) -> &Faults {
        &self.sts_faults
    }

    /// Faults for the S3 front.
    pub fn s3_faults(&self) -> &Faults {
        &self.s3_faults
    }
}
