//! The AWS emulator driven by the real aws-sdk-iam and aws-sdk-sts: moto's lifecycle, the IAM
//! front's extra checks, and `AssumeRoleWithWebIdentity` allowed and refused for the reasons
//! real STS uses. Each test starts its own moto (under a second) so tests stay independent.

mod iam;
mod moto;
mod sts;

use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_sts::{config::http::HttpResponse, error::SdkError};
use axum::{Json, Router, extract::State, routing::get};
use passport_e2e::{
    aws::{self, Aws, Options},
    oidc::Issuer,
    serve::Server,
    tls::Ca,
};
use serde_json::{Value, json};

pub const AUD: &str = "sts.amazonaws.com";

/// A Kubernetes-like token issuer on HTTPS (stack CA) serving discovery and JWKS.
pub struct TestIssuer {
    pub issuer: Issuer,
    _server: Server,
}

impl TestIssuer {
    pub async fn start(ca: &Ca) -> anyhow::Result<Self> {
        // The issuer's documents name its URL, which is known only once the server listens.
        let docs: Arc<OnceLock<(Value, Value)>> = Arc::default();
        let router = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(
                    |State(d): State<Arc<OnceLock<(Value, Value)>>>| async move {
                        Json(d.get().map(|d| d.0.clone()).unwrap_or_default())
                    },
                ),
            )
            .route(
                "/openid/v1/jwks",
                get(
                    |State(d): State<Arc<OnceLock<(Value, Value)>>>| async move {
                        Json(d.get().map(|d| d.1.clone()).unwrap_or_default())
                    },
                ),
            )
            .with_state(docs.clone());
        let server = Server::https(router, ca.loopback_server_config().await?).await?;
        let issuer = Issuer::generate(&server.url())?;
        docs.set((issuer.discovery(), issuer.jwks()))
            .map_err(|_| anyhow::anyhow!("issuer documents set twice"))?;
        Ok(Self {
            issuer,
            _server: server,
        })
    }

    pub fn url(&self) -> &str {
        self.issuer.url()
    }

    /// `127.0.0.1:PORT`: the provider ARN suffix and the condition-key prefix.
    pub fn host_path(&self) -> &str {
        self.url().trim_start_matches("https://")
    }

    pub fn provider_arn(&self) -> String {
        format!(
            "arn:aws:iam::{}:oidc-provider/{}",
            aws::ACCOUNT_ID,
            self.host_path()
        )
    }

    /// A service-account token shaped like kube-apiserver's, expiring `ttl` seconds from now.
    pub fn token(
        &self,
        namespace: &str,
        sa: &str,
        aud: &[&str],
        ttl: i64,
    ) -> anyhow::Result<String> {
        let now = jiff::Timestamp::now().as_second();
        self.issuer.sign(&json!({
            "iss": self.url(),
            "sub": format!("system:serviceaccount:{namespace}:{sa}"),
            "aud": aud,
            "exp": now + ttl,
            "iat": now - 30,
            "nbf": now - 30,
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": sa, "uid": "6c1c4ba8-4f1e-4a6b-9a7e-3d2f1e0c9b8a"},
                "pod": {"name": format!("{sa}-0"), "uid": "0f5c2a1e-7d3b-4c8e-a9f6-1b2c3d4e5f60"},
            },
        }))
    }
}

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
