//! Google Cloud: workload identity pools and providers (REST), service-account IAM policies.
//!
//! Credentials are Google application default credentials through google-cloud-auth
//! (`GOOGLE_APPLICATION_CREDENTIALS`, workload identity federation, the metadata server), so
//! Passport can itself run on workload identity. Pools and providers go over REST, since no
//! google-cloud crate covers them; service-account IAM policies go through
//! google-cloud-iam-admin-v1. Every call runs through [`Caller`] (counted, retried), and pool
//! and provider writes through the per-project [`WriteLimiter`].

mod bindings;
mod limiter;
mod pools;
pub(crate) mod rest;
pub mod wire;

use anyhow::Context as _;
use async_trait::async_trait;
use google_cloud_auth::credentials::{self, Credentials};
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_iam_admin_v1::client::Iam;
use passport_crds::Cloud;

pub use bindings::WORKLOAD_IDENTITY_USER;
pub use limiter::WriteLimiter;

use super::{
    BindingIntent, Calls, CloudConfig, CloudError, Deleted, Ensured, ServiceAccountBindings,
    WorkloadIdentityIntent, WorkloadIdentityPools, WorkloadIdentityRef, WorkloadIdentityState,
    retry::Caller,
};

/// The OAuth scope of every call: IAM has no narrower one.
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The Google Cloud provider.
#[derive(Clone, Debug)]
pub struct GcpProvider {
    rest: rest::Rest,
    iam: Iam,
    limiter: WriteLimiter,
}

impl GcpProvider {
    /// A provider with Google application default credentials.
    pub async fn from_env(config: &CloudConfig, calls: Calls) -> anyhow::Result<Self> {
        let credentials = credentials::Builder::default()
            .with_scopes([CLOUD_PLATFORM])
            .build()
            .context("loading Google application default credentials")?;
        Self::new(config, calls, credentials).await
    }

    /// A provider with the given credentials.
    pub async fn new(
        config: &CloudConfig,
        calls: Calls,
        credentials: Credentials,
    ) -> anyhow::Result<Self> {
        let caller = Caller::new(Cloud::Gcp, calls, config.backoff);
        let iam = Iam::builder()
            .with_endpoint(config.gcp_iam_endpoint.trim_end_matches('/'))
            .with_credentials(credentials.clone())
            // Retries belong to `Caller`, which counts every attempt.
            .with_retry_policy(NeverRetry)
            .build()
            .await
            .context("building the Google IAM client")?;
        Ok(Self {
            rest: rest::Rest::new(
                config.http_client()?,
                &config.gcp_iam_endpoint,
                credentials,
                caller,
            ),
            iam,
            limiter: WriteLimiter::per_minute(config.gcp_writes_per_minute),
        })
    }

    /// Replaces the write limiter (tests use short windows).
    pub fn with_limiter(mut self, limiter: WriteLimiter) -> Self {
        self.limiter = limiter;
        self
    }
}

#[async_trait]
impl WorkloadIdentityPools for GcpProvider {
    async fn ensure_workload_identity_provider(
        &self,
        intent: &WorkloadIdentityIntent,
    ) -> Result<Ensured<WorkloadIdentityState>, CloudError> {
        self.ensure_pool_and_provider(intent).await
    }

    async fn delete_workload_identity_provider(
        &self,
        target: &WorkloadIdentityRef,
    ) -> Result<Deleted, CloudError> {
        self.delete_pool_and_provider(target).await
    }
}

#[async_trait]
impl ServiceAccountBindings for GcpProvider {
    async fn ensure_workload_identity_users(
        &self,
        intent: &BindingIntent,
    ) -> Result<Ensured<()>, CloudError> {
        self.ensure_members(intent).await
    }
}
