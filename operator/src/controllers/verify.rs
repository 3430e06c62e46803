//! `Verified`: a real token exchange for one bound service account, the way its pods will do
//! it. The controller asks the API server for a token (TokenRequest, the policy's audience, the
//! minimum lifetime), exchanges it with the cloud, and discards what it gets. The token is never
//! logged or stored.

use std::time::Duration;

use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::ServiceAccount,
};
use kube::{Api, Client, api::PostParams};
use passport_crds::{AccessPolicy, FederatedTrust};

use super::{access_policy::desired::PolicyPlan, federated_trust::desired as trust_desired};

/// The shortest lifetime the TokenRequest API grants.
pub const TOKEN_SECONDS: i64 = 600;

/// Where the exchanges go. The defaults are the clouds' public endpoints.
#[derive(Clone, Debug, clap::Args)]
pub struct VerifyConfig {
    /// Google STS, for the federated token exchange.
    #[arg(
        long,
        env = "PASSPORT_GCP_STS_ENDPOINT",
        default_value = "https://sts.googleapis.com"
    )]
    pub gcp_sts_endpoint: String,
    /// Google IAM Credentials, for service-account impersonation.
    #[arg(
        long,
        env = "PASSPORT_GCP_IAMCREDENTIALS_ENDPOINT",
        default_value = "https://iamcredentials.googleapis.com"
    )]
    pub gcp_iamcredentials_endpoint: String,
}

/// Performs the exchanges.
pub struct Verifier {
    client: Client,
    http: reqwest::Client,
    sts: Option<aws_sdk_sts::Client>,
    config: VerifyConfig,
    /// The Entra authority pods are given instead of their trust's (`--pod-azure-authority-host`):
    /// verification exchanges where the pods will.
    azure_authority_override: Option<String>,
}

impl Verifier {
    pub fn new(
        client: Client,
        http: reqwest::Client,
        sts: Option<aws_sdk_sts::Client>,
        config: VerifyConfig,
        azure_authority_override: Option<String>,
    ) -> Self {
        Self {
            client,
            http,
            sts,
            config,
            azure_authority_override,
        }
    }

    /// Exchanges a fresh token of the policy's first service account; the error is the cloud's
    /// own answer, for the condition.
    pub async fn verify(
        &self,
        policy: &AccessPolicy,
        trust: &FederatedTrust,
        plan: &PolicyPlan,
    ) -> Result<(), String> {
        let namespace = policy.metadata.namespace.as_deref().unwrap_or_default();
        let Some(service_account) = policy.spec.service_accounts.first() else {
            return Err("the policy binds no service account".to_owned());
        };
        let token = self
            .token(namespace, service_account, &plan.audience)
            .await?;
        if let (Some(_), Some(_)) = (&trust.spec.aws, &policy.spec.aws) {
            return self.aws(&plan.identity, &token).await;
        }
        if let (Some(gcp), Some(access)) = (&trust.spec.gcp, &policy.spec.gcp) {
            let audience =
                trust_desired::gcp_audience(&gcp.project_number, &gcp.pool_id, &gcp.provider_id);
            let federated = self.gcp_sts(&audience, &token).await?;
            return match &access.service_account {
                Some(email) => self.gcp_impersonate(email, &federated).await,
                None => Ok(()),
            };
        }
        if let (Some(azure), Some(access)) = (&trust.spec.azure, &policy.spec.azure) {
            let client_id = access
                .client_id
                .clone()
                .or_else(|| {
                    policy
                        .status
                        .as_ref()
                        .and_then(|s| s.azure.as_ref())
                        .and_then(|a| a.client_id.clone())
                })
                .ok_or("the identity's client ID is not known yet")?;
            let authority = self
                .azure_authority_override
                .as_deref()
                .unwrap_or(&azure.authority_host);
            return self
                .azure(authority, &azure.tenant_id, &client_id, &token)
                .await;
        }
        // Other relying parties: a token with the audience is all Passport can prove.
        Ok(())
    }

    async fn token(
        &self,
        namespace: &str,
        service_account: &str,
        audience: &str,
    ) -> Result<String, String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![audience.to_owned()]),
                expiration_seconds: Some(TOKEN_SECONDS),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let response = api
            .create_token_request(service_account, &PostParams::default(), &request)
            .await
            .map_err(|e| {
                format!("requesting a token for service account {namespace}/{service_account}: {e}")
            })?;
        response
            .status
            .and_then(|s| s.token)
            .ok_or_else(|| "the API server returned a TokenRequest without a token".to_owned())
    }

    async fn aws(&self, role_arn: &str, token: &str) -> Result<(), String> {
        let sts = self
            .sts
            .as_ref()
            .ok_or("Passport has no AWS STS client configured")?;
        sts.assume_role_with_web_identity()
            .role_arn(role_arn)
            .role_session_name("passport-verify")
            .web_identity_token(token)
            .duration_seconds(900)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let detail = aws_sdk_sts::error::DisplayErrorContext(&e).to_string();
                format!("AWS STS AssumeRoleWithWebIdentity for {role_arn} failed: {detail}")
            })
    }

    async fn gcp_sts(&self, audience: &str, token: &str) -> Result<String, String> {
        let url = format!(
            "{}/v1/token",
            self.config.gcp_sts_endpoint.trim_end_matches('/')
        );
        let form = [
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("audience", audience),
            ("scope", "https://www.googleapis.com/auth/cloud-platform"),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("subject_token", token),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ];
        let body = self
            .send(
                self.http.post(&url).form(&form),
                "Google STS token exchange",
            )
            .await?;
        body.get("access_token")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| "Google STS answered without an access_token".to_owned())
    }

    async fn gcp_impersonate(&self, email: &str, federated: &str) -> Result<(), String> {
        let url = format!(
            "{}/v1/projects/-/serviceAccounts/{email}:generateAccessToken",
            self.config
                .gcp_iamcredentials_endpoint
                .trim_end_matches('/')
        );
        let body = serde_json::json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"]});
        self.send(
            self.http.post(&url).bearer_auth(federated).json(&body),
            &format!("impersonating {email}"),
        )
        .await
        .map(|_| ())
    }

    async fn azure(
        &self,
        authority: &str,
        tenant: &str,
        client_id: &str,
        token: &str,
    ) -> Result<(), String> {
        let url = format!(
            "{}/{tenant}/oauth2/v2.0/token",
            authority.trim_end_matches('/')
        );
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("scope", "https://management.azure.com/.default"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", token),
        ];
        self.send(
            self.http.post(&url).form(&form),
            &format!("Entra token request for client {client_id}"),
        )
        .await
        .map(|_| ())
    }

    /// Sends an exchange; a refusal carries the cloud's own error text (never the token).
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<serde_json::Value, String> {
        let response = request
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!(
                "{what} refused with HTTP {status}: {}",
                cloud_error(&text)
            ));
        }
        serde_json::from_str(&text).map_err(|e| format!("{what}: the answer is not JSON: {e}"))
    }
}

/// The cloud's message from an OAuth or Google error body, or the body itself, cut short.
fn cloud_error(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        let text = |key: &str| v.get(key).and_then(|x| x.as_str());
        text("error_description")
            .or_else(|| {
                v.get("error")
                    .and_then(|e| e.get("message"))
                    .and_then(|m| m.as_str())
            })
            .or_else(|| text("error"))
            .map(str::to_owned)
    });
    super::context::truncate(message.unwrap_or_else(|| body.to_owned()), 500)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clouds_own_error_text_is_kept() {
        assert_eq!(
            cloud_error(
                r#"{"error":"invalid_grant","error_description":"The audience does not match"}"#
            ),
            "The audience does not match"
        );
        assert_eq!(
            cloud_error(r#"{"error":{"code":403,"message":"Permission denied"}}"#),
            "Permission denied"
        );
        assert_eq!(cloud_error("plain text"), "plain text");
        assert_eq!(cloud_error(&"x".repeat(900)).len(), 500);
    }
}
