//! The AWS emulator driven by the real aws-sdk-iam and aws-sdk-sts: moto's lifecycle, the IAM
//! front's extra checks, and `AssumeRoleWithWebIdentity` allowed and refused for the reasons
//! real STS uses. Each test starts its own moto (under a second) so tests stay independent.

mod iam;
mod moto;
mod sts;

use anyhow::Context as _;
use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_sts::{config::http::HttpResponse, error::SdkError};
use passport_e2e::{
    aws::{self, Aws, Options},
    tls::Ca,
};
use serde_json::json;

pub const AUD: &str = "sts.amazonaws.com";

pub use passport_e2e::oidc::ServedIssuer as TestIssuer;

/// One AWS emulator, one issuer registered as an IAM OIDC provider, SDK clients.
pub struct Fixture {
    pub ca: Ca,
    pub aws: Aws,
    pub issuer: TestIssuer,
    pub iam: aws_sdk_iam::Client,
    pub sts: aws_sdk_sts::Client,
}

impl Fixture {
    async fn start() -> anyhow::Result<Self> {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> anyhow::Result<Self> {
        let ca = Ca::new()?;
        let aws = Aws::start_with(&ca, options).await?;
        let issuer = TestIssuer::start(&ca).await?;
        let iam = aws::iam_client(&aws.iam_url());
        let sts = aws_sdk_sts::Client::from_conf(
            aws::sts_config(&aws.sts_url())
                .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled())
                .build(),
        );
        iam.create_open_id_connect_provider()
            .url(issuer.url())
            .client_id_list(AUD)
            .send()
            .await
            .context("creating the OIDC provider")?;
        Ok(Self {
            ca,
            aws,
            issuer,
            iam,
            sts,
        })
    }

    /// Creates a role trusting the issuer with `operator` on `sub` (and `aud` = AUD).
    pub async fn role(&self, name: &str, operator: &str, sub: &str) -> anyhow::Result<String> {
        let host = self.issuer.host_path();
        let mut condition = json!({"StringEquals": {format!("{host}:aud"): AUD}});
        condition[operator][format!("{host}:sub")] = json!(sub);
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": self.issuer.provider_arn()},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": condition,
            }],
        });
        let role = self
            .iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(policy.to_string())
            .send()
            .await
            .context("creating the role")?;
        Ok(role.role().map(|r| r.arn().to_owned()).unwrap_or_default())
    }

    pub async fn assume(
        &self,
        role_arn: &str,
        token: &str,
    ) -> Result<
        aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityOutput,
        SdkError<
            aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError,
        >,
    > {
        self.sts
            .assume_role_with_web_identity()
            .role_arn(role_arn)
            .role_session_name("e2e")
            .web_identity_token(token)
            .send()
            .await
    }
}

/// The error code and HTTP status of a refused call.
pub fn refusal<E: ProvideErrorMetadata>(
    result: Result<impl std::fmt::Debug, SdkError<E, HttpResponse>>,
) -> (String, u16) {
    match result {
        Ok(out) => panic!("expected a refusal, got {out:?}"),
        Err(e) => (
            e.code().unwrap_or("<none>").to_owned(),
            e.raw_response().map_or(0, |r| r.status().as_u16()),
        ),
    }
}
