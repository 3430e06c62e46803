//! AWS SDK clients pointed at the local stack: static test credentials, `us-east-1`, an endpoint
//! override, and (for HTTPS endpoints) an HTTP client that trusts the stack CA.

use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region, SharedHttpClient};
use aws_smithy_http_client::tls;

/// The region the stack's clients use.
pub const REGION: &str = "us-east-1";

/// The access key of the stack's static credentials.
pub const TEST_ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
/// The secret key of the stack's static credentials (moto does not check it).
pub const TEST_SECRET_ACCESS_KEY: &str = "testing";

/// Static credentials moto accepts (it does not check them).
pub fn test_credentials() -> Credentials {
    Credentials::new(
        TEST_ACCESS_KEY_ID,
        TEST_SECRET_ACCESS_KEY,
        None,
        None,
        "passport-e2e",
    )
}

/// An SDK HTTP client that trusts only `ca_pem` (the stack CA), for HTTPS endpoints.
pub fn https_client_trusting(ca_pem: &str) -> anyhow::Result<SharedHttpClient> {
    crate::tls::install_crypto_provider();
    let trust = tls::TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(ca_pem.as_bytes().to_vec());
    let context = tls::TlsContext::builder().with_trust_store(trust).build()?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https())
}

/// An IAM config builder for `endpoint` with static test credentials; callers may adjust it
/// (retries, HTTP client) before `build()`.
pub fn iam_config(endpoint: &str) -> aws_sdk_iam::config::Builder {
    aws_sdk_iam::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(test_credentials())
}

/// An IAM client for `endpoint` (moto, or the stack's IAM front) with static test credentials.
pub fn iam_client(endpoint: &str) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::from_conf(iam_config(endpoint).build())
}

/// An STS config builder for `endpoint` without credentials: `AssumeRoleWithWebIdentity` is an
/// unsigned call. Add `credentials_provider` for signed calls such as `GetCallerIdentity`.
pub fn sts_config(endpoint: &str) -> aws_sdk_sts::config::Builder {
    aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_sts::config::Region::new(REGION))
}

/// An STS client for `endpoint` without credentials.
pub fn sts_client(endpoint: &str) -> aws_sdk_sts::Client {
    aws_sdk_sts::Client::from_conf(sts_config(endpoint).build())
}
