//! AWS IAM through aws-sdk-iam: OIDC providers for trusts' issuers, and the roles of access
//! policies (roles Passport owns under the trust's path, and Passport's own statements in
//! adopted roles). Only this module knows the SDK.

mod error;
mod oidc;
pub use oidc::oidc_provider_arn;
pub mod policy;
mod roles;

use anyhow::Context as _;
use aws_config::{BehaviorVersion, retry::RetryConfig};
use aws_sdk_iam::types::Tag;
use aws_smithy_http_client::tls;

use super::{Calls, CloudConfig, CloudError, ErrorKind, retry::Caller};
use passport_crds::Cloud;

/// The IAM provider: implements [`super::OidcProviders`] and [`super::Roles`].
#[derive(Clone, Debug)]
pub struct AwsProvider {
    iam: aws_sdk_iam::Client,
    caller: Caller,
    /// The account's trust-policy quota (characters, whitespace excluded).
    quota: usize,
}

impl AwsProvider {
    /// Credentials and region from aws-config's standard chain (environment, profile, web
    /// identity, container and instance metadata), so Passport can run on IRSA itself. The
    /// endpoint and an extra CA come from `config`.
    pub async fn from_env(config: &CloudConfig, calls: Calls) -> anyhow::Result<Self> {
        let sdk = sdk_config(config, config.aws_iam_endpoint.as_deref()).await?;
        let mut iam = aws_sdk_iam::config::Builder::from(&sdk);
        if let Some(endpoint) = &config.aws_iam_endpoint {
            iam = iam.endpoint_url(endpoint);
        }
        Ok(Self::new(
            aws_sdk_iam::Client::from_conf(iam.build()),
            calls,
            config,
        ))
    }

    /// A provider over an IAM client built elsewhere (its retries should be disabled).
    pub fn new(iam: aws_sdk_iam::Client, calls: Calls, config: &CloudConfig) -> Self {
        Self {
            iam,
            caller: Caller::new(Cloud::Aws, calls, config.backoff),
            quota: config.aws_trust_policy_quota,
        }
    }
}

/// aws-config's standard chain (credentials, region, `AWS_ENDPOINT_URL_<SERVICE>`) with SDK
/// retries off (the Caller retries and counts every attempt), trusting `config`'s extra CA;
/// `endpoint` overrides every service's endpoint.
pub async fn sdk_config(
    config: &CloudConfig,
    endpoint: Option<&str>,
) -> anyhow::Result<aws_config::SdkConfig> {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).retry_config(RetryConfig::disabled());
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(pem) = config.ca_pem()? {
        let trust = tls::TrustStore::default().with_pem_certificate(pem);
        let context = tls::TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .context("building the TLS context for AWS")?;
        loader = loader.http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .tls_context(context)
                .build_https(),
        );
    }
    Ok(loader.load().await)
}

/// IAM tags from a tag map.
fn tags(map: &std::collections::BTreeMap<String, String>) -> Result<Vec<Tag>, CloudError> {
    map.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| CloudError::new(ErrorKind::Invalid, Cloud::Aws, "Tag", e.to_string()))
        })
        .collect()
}

/// A tag list as a map.
fn tag_map(tags: &[Tag]) -> std::collections::BTreeMap<String, String> {
    tags.iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect()
}

/// The role name of a role ARN (`arn:aws:iam::123456789012:role/path/name` -> `name`).
pub fn role_name_of(arn: &str) -> Option<&str> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let path = resource.strip_prefix("role/")?;
    path.rsplit('/').next().filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::role_name_of;

    #[test]
    fn role_names_come_from_the_last_path_segment() {
        assert_eq!(
            role_name_of("arn:aws:iam::123456789012:role/apps/team/payments"),
            Some("payments")
        );
        assert_eq!(
            role_name_of("arn:aws:iam::123456789012:role/app"),
            Some("app")
        );
        assert_eq!(role_name_of("arn:aws:iam::123456789012:user/app"), None);
        assert_eq!(role_name_of("nonsense"), None);
    }
}
