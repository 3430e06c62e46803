//! The operator's own ARM access token, from the environment Azure's identity libraries read:
//! `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and either `AZURE_CLIENT_SECRET` (client credentials) or
//! `AZURE_FEDERATED_TOKEN_FILE` (workload identity federation), against `AZURE_AUTHORITY_HOST`.
//!
//! Why not the `azure_identity` crate: version 1.0 would honour `AZURE_AUTHORITY_HOST` and accept
//! our reqwest client as its transport (so the extra CA would work), but it brings azure_core's
//! HTTP pipeline with its own retry policy and token cache, so token calls would escape
//! [`Caller`]'s accounting and budget, and its workload identity credential re-reads the token
//! file only every ten minutes. The flow itself is one form POST, so it is kept here.

use std::{fmt, path::PathBuf, time::Duration};

use passport_crds::Cloud;
use serde::Deserialize;
use tokio::{sync::Mutex, time::Instant};

use super::super::{CloudError, ErrorKind, calls::Access, error::kind_for_status, retry::Caller};

/// The scope for Azure Resource Manager.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
/// The public cloud's authority host, used when `AZURE_AUTHORITY_HOST` is unset.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// A cached token is replaced this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A secret string whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// How the operator proves who it is to Entra.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proof {
    ClientSecret(Secret),
    /// A projected service-account token, re-read on every request (the kubelet rotates it).
    FederatedTokenFile(PathBuf),
}

/// The operator's Azure credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub tenant_id: String,
    pub client_id: String,
    pub proof: Proof,
    /// `https://login.microsoftonline.com/` or a sovereign cloud's or emulator's host.
    pub authority_host: String,
}

impl Credentials {
    /// Reads the credentials from the process environment.
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the credentials through `var`. A client secret wins over a token file, as in
    /// azure-identity's default chain (its environment credential comes first).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let tenant_id = var("AZURE_TENANT_ID").ok_or("AZURE_TENANT_ID is not set")?;
        let client_id = var("AZURE_CLIENT_ID").ok_or("AZURE_CLIENT_ID is not set")?;
        let proof = match (
            var("AZURE_CLIENT_SECRET"),
            var("AZURE_FEDERATED_TOKEN_FILE"),
        ) {
            (Some(secret), _) => Proof::ClientSecret(Secret::new(secret)),
            (None, Some(file)) => Proof::FederatedTokenFile(PathBuf::from(file)),
            (None, None) => {
                return Err(
                    "set AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE for Azure".to_owned(),
                );
            }
        };
        Ok(Self {
            tenant_id,
            client_id,
            proof,
            authority_host: var("AZURE_AUTHORITY_HOST")
                .unwrap_or_else(|| DEFAULT_AUTHORITY_HOST.to_owned()),
        })
    }

    /// `{authority}{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority_host.trim_end_matches('/'),
            self.tenant_id
        )
    }
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
}

/// Fetches access tokens for one scope (ARM's unless told otherwise) and keeps one until
/// shortly before it expires.
pub struct TokenSource {
    credentials: Credentials,
    http: reqwest::Client,
    scope: &'static str,
    /// Held while a token is fetched, so concurrent callers wait for one request.
    cache: Mutex<Option<Cached>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize, Default)]
struct EntraError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl TokenSource {
    pub fn new(credentials: Credentials, http: reqwest::Client) -> Self {
        Self::for_scope(credentials, http, ARM_SCOPE)
    }

    /// Tokens for another resource, e.g. `https://storage.azure.com/.default`.
    pub fn for_scope(credentials: Credentials, http: reqwest::Client, scope: &'static str) -> Self {
        Self {
            credentials,
            http,
            scope,
            cache: Mutex::new(None),
        }
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// A valid ARM token: the cached one, or a new one from Entra (through `caller`).
    pub async fn token(&self, caller: &Caller) -> Result<Secret, CloudError> {
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref()
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let response = caller
            .run("GetToken", Access::Read, || self.request())
            .await?;
        let lifetime = Duration::from_secs(response.expires_in);
        // Short-lived tokens are refreshed at half their life instead.
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        let token = Secret::new(response.access_token);
        *cache = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime - margin,
        });
        tracing::debug!(
            client_id = %self.credentials.client_id,
            expires_in = response.expires_in,
            "fetched azure access token"
        );
        Ok(token)
    }

    /// Drops the cached token (ARM refused it).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    async fn request(&self) -> Result<TokenResponse, CloudError> {
        let error =
            |kind, message: String| CloudError::new(kind, Cloud::Azure, "GetToken", message);
        let assertion;
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.credentials.client_id.as_str()),
            ("scope", self.scope),
        ];
        match &self.credentials.proof {
            Proof::ClientSecret(secret) => form.push(("client_secret", secret.expose())),
            Proof::FederatedTokenFile(path) => {
                assertion = tokio::fs::read_to_string(path).await.map_err(|e| {
                    error(
                        ErrorKind::AccessDenied,
                        format!("reading AZURE_FEDERATED_TOKEN_FILE {}: {e}", path.display()),
                    )
                })?;
                form.push(("client_assertion_type", JWT_BEARER));
                form.push(("client_assertion", assertion.trim()));
            }
        }
        let response = self
            .http
            .post(self.credentials.token_url())
            .form(&form)
            .send()
            .await
            .map_err(|e| error(ErrorKind::Unavailable, format!("token request failed: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return response.json::<TokenResponse>().await.map_err(|e| {
                error(
                    ErrorKind::Unavailable,
                    format!("unreadable token response: {e}"),
                )
            });
        }
        let body: EntraError = response.json().await.unwrap_or_default();
        // Entra answers 400/401 for refused credentials: the operator's identity is wrong.
        let kind = match kind_for_status(status.as_u16()) {
            ErrorKind::Invalid | ErrorKind::NotFound => ErrorKind::AccessDenied,
            kind => kind,
        };
        let message = if body.error_description.is_empty() {
            format!("Entra answered {status}")
        } else {
            body.error_description
        };
        let mut failure = error(kind, message);
        if !body.error.is_empty() {
            failure = failure.with_code(body.error);
        }
        Err(failure)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn a_client_secret_wins_over_a_token_file() {
        let creds = Credentials::from_vars(vars(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
        ]));
        assert_eq!(
            creds.map(|c| c.proof),
            Ok(Proof::ClientSecret(Secret::new("s")))
        );
    }

    #[test]
    fn the_token_file_and_the_authority_host_come_from_the_environment() {
        let creds = Credentials::from_vars(vars(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
            ("AZURE_AUTHORITY_HOST", "https://login.example/"),
        ]))
        .unwrap();
        assert_eq!(
            creds.proof,
            Proof::FederatedTokenFile(PathBuf::from("/var/run/token"))
        );
        assert_eq!(
            creds.token_url(),
            "https://login.example/t/oauth2/v2.0/token"
        );
        let public = Credentials::from_vars(vars(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
        ]))
        .unwrap();
        assert_eq!(
            public.token_url(),
            "https://login.microsoftonline.com/t/oauth2/v2.0/token"
        );
    }

    #[test]
    fn missing_variables_are_named_and_secrets_never_shown() {
        let err = Credentials::from_vars(vars(&[("AZURE_TENANT_ID", "t")]));
        assert_eq!(err, Err("AZURE_CLIENT_ID is not set".to_owned()));
        let err =
            Credentials::from_vars(vars(&[("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c")]));
        assert!(err.is_err_and(|e| e.contains("AZURE_CLIENT_SECRET")));
        let shown = format!("{:?}", Proof::ClientSecret(Secret::new("hunter2")));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
