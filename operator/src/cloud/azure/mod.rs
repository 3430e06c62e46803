//! Azure: federated identity credentials on user-assigned managed identities, over ARM REST.
//!
//! No maintained Rust crate covers the ManagedIdentity management API: the generated
//! `azure_mgmt_msi` lives only on the SDK's retired `legacy` branch (on azure_core 0.x and an
//! older reqwest), and the current Azure SDK for Rust has no management-plane crate for it.
//! Passport needs five calls of it, so this module speaks ARM over reqwest itself: `arm` sends
//! and maps errors, `fic` owns the document and its comparison, `token` the operator's own
//! access token.
//!
//! Writes to one identity are serialised here, because ARM refuses a second concurrent FIC
//! write to an identity with 409 `ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity`
//! (the peers break on it: crossplane-contrib/provider-upjet-azure#689); that 409, which other
//! writers can still cause, is retried with backoff.

mod arm;
mod fic;
pub mod token;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use anyhow::Context as _;
use async_trait::async_trait;
use passport_crds::{Cloud, naming::is_valid_azure_fic_name};
use reqwest::{Method, StatusCode};
use serde::Deserialize as _;
use serde_json::Value;

use super::{
    Change, CloudConfig, CloudError, Deleted, Ensured, ErrorKind, FederatedCredentialIntent,
    FederatedCredentialState, FederatedCredentials,
    calls::{Access, Calls},
    error::FEDERATED_CREDENTIAL_LIMIT,
    retry::Caller,
};
use arm::{Answer, CONCURRENT_FIC_WRITES, Identity, IdentityId, Page, Resource};
use fic::FicSpec;
pub use token::{Credentials, TokenSource};

/// How many credentials ARM allows on one user-assigned identity (no increase exists).
pub const MAX_FEDERATED_CREDENTIALS: usize = 20;

const GET_FIC: &str = "GetFederatedIdentityCredential";
const PUT_FIC: &str = "PutFederatedIdentityCredential";
const DELETE_FIC: &str = "DeleteFederatedIdentityCredential";
const LIST_FICS: &str = "ListFederatedIdentityCredentials";
const GET_IDENTITY: &str = "GetUserAssignedIdentity";
/// ARM's 404 code when the identity itself is missing (a missing credential is `ResourceNotFound`).
const PARENT_NOT_FOUND: &str = "ParentResourceNotFound";

/// ARM codes that mean the bearer token itself was refused: fetch a new one once.
const TOKEN_REFUSED: &[&str] = &[
    "ExpiredAuthenticationToken",
    "InvalidAuthenticationToken",
    "AuthenticationFailed",
];

/// The PUT body Passport writes for `intent`.
pub fn credential_body(intent: &FederatedCredentialIntent) -> Value {
    FicSpec::desired(intent).body()
}

/// The Azure provider.
pub struct AzureProvider {
    /// ARM's base URL, without a trailing slash.
    arm: String,
    http: reqwest::Client,
    tokens: TokenSource,
    caller: Caller,
    /// One async mutex per identity (lower-cased resource ID), held for each write. Entries are
    /// never removed: there is one per identity Passport manages, a few bytes each.
    writers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl AzureProvider {
    pub fn new(
        config: &CloudConfig,
        credentials: Credentials,
        calls: Calls,
    ) -> anyhow::Result<Self> {
        let http = config.http_client()?;
        Ok(Self {
            arm: config.azure_arm_endpoint.trim_end_matches('/').to_owned(),
            tokens: TokenSource::new(credentials, http.clone()),
            http,
            caller: Caller::new(Cloud::Azure, calls, config.backoff),
            writers: Mutex::new(HashMap::new()),
        })
    }

    /// A provider with the credentials the environment names (see [`token`]).
    pub fn from_env(config: &CloudConfig, calls: Calls) -> anyhow::Result<Self> {
        let credentials = Credentials::from_env()
            .map_err(anyhow::Error::msg)
            .context("reading the Azure credentials")?;
        Self::new(config, credentials, calls)
    }

    pub fn calls(&self) -> &Calls {
        &self.caller.calls
    }

    fn writer(&self, identity: &IdentityId) -> Arc<tokio::sync::Mutex<()>> {
        let mut writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        writers.entry(identity.key()).or_default().clone()
    }

    /// One ARM call through the [`Caller`]: counted, retried on 429, 5xx and a concurrent FIC
    /// write, and retried once with a new token when ARM refuses the cached one.
    async fn call(
        &self,
        operation: &'static str,
        access: Access,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Answer, CloudError> {
        let mut fresh_token = false;
        loop {
            let token = self.tokens.token(&self.caller).await?;
            let result = self
                .caller
                .run(operation, access, || async {
                    arm::send(
                        &self.http,
                        method.clone(),
                        url,
                        token.expose(),
                        body,
                        operation,
                    )
                    .await
                    .map_err(|e| match e.code.as_deref() {
                        // Retried like throttling; reported as the Conflict it is.
                        Some(CONCURRENT_FIC_WRITES) => CloudError {
                            kind: ErrorKind::Throttled,
                            ..e
                        },
                        _ => e,
                    })
                })
                .await;
            match result {
                Err(e) if e.code.as_deref() == Some(CONCURRENT_FIC_WRITES) => {
                    return Err(CloudError {
                        kind: ErrorKind::Conflict,
                        ..e
                    });
                }
                Err(e)
                    if e.code
                        .as_deref()
                        .is_some_and(|c| TOKEN_REFUSED.contains(&c)) =>
                {
                    self.tokens.invalidate().await;
                    if fresh_token {
                        return Err(e);
                    }
                    fresh_token = true;
                }
                other => return other,
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.arm)
    }

    /// Counts the identity's credentials (following `nextLink`), to explain a refused create.
    async fn count_credentials(&self, identity: &IdentityId) -> Result<usize, CloudError> {
        let mut url = self.url(&identity.fics_path());
        let mut count = 0;
        // ARM pages lists; a page holds at least one credential, so 21 pages cover the limit.
        for _ in 0..=MAX_FEDERATED_CREDENTIALS {
            let page: Page = self
                .call(LIST_FICS, Access::Read, Method::GET, &url, None)
                .await?
                .parse(LIST_FICS)?;
            count += page.value.len();
            match page.next_link {
                Some(next) if !next.is_empty() => url = next,
                _ => break,
            }
        }
        Ok(count)
    }

    fn limit_reached(identity: &IdentityId, count: usize, arm: &CloudError) -> CloudError {
        CloudError::new(
            ErrorKind::LimitExceeded,
            Cloud::Azure,
            PUT_FIC,
            format!(
                "identity {} already has {count} federated identity credentials, the most Azure \
                 allows on one identity ({MAX_FEDERATED_CREDENTIALS}, no increase exists): bind \
                 fewer service accounts to this identity, or give some of them another identity \
                 (ARM: {})",
                identity.as_str(),
                arm.message
            ),
        )
        .with_code(FEDERATED_CREDENTIAL_LIMIT)
    }
}

/// The credential's ID as ARM returned it, or as Passport addressed it.
fn state(identity: &IdentityId, name: &str, body: &Value) -> FederatedCredentialState {
    let id = Resource::deserialize(body).ok().and_then(|r| r.id);
    FederatedCredentialState {
        id: id.unwrap_or_else(|| identity.fic_path(name)),
    }
}

#[async_trait]
impl FederatedCredentials for AzureProvider {
    async fn ensure_federated_credential(
        &self,
        intent: &FederatedCredentialIntent,
    ) -> Result<Ensured<FederatedCredentialState>, CloudError> {
        let identity = IdentityId::parse(&intent.identity, PUT_FIC)?;
        if !is_valid_azure_fic_name(&intent.name) {
            return Err(CloudError::new(
                ErrorKind::Invalid,
                Cloud::Azure,
                PUT_FIC,
                format!(
                    "'{}' is not a valid federated identity credential name (^[a-zA-Z0-9][a-zA-Z0-9-_]{{2,119}}$)",
                    intent.name
                ),
            ));
        }
        let desired = FicSpec::desired(intent);
        let url = self.url(&identity.fic_path(&intent.name));
        let writer = self.writer(&identity);
        // Held across the read too, so that the comparison sees the last write of this process.
        let _writing = writer.lock().await;
        let observed = match self
            .call(GET_FIC, Access::Read, Method::GET, &url, None)
            .await
        {
            Ok(answer) => Some(answer.body),
            Err(e) if e.is_not_found() && e.code.as_deref() != Some(PARENT_NOT_FOUND) => None,
            Err(e) => return Err(e),
        };
        let (change, changes) = match &observed {
            Some(body) => {
                let changes = desired.changes_from(&FicSpec::observed(body));
                if changes.is_empty() {
                    return Ok(Ensured::unchanged(state(&identity, &intent.name, body)));
                }
                (Change::Updated, changes)
            }
            None => (
                Change::Created,
                vec![format!(
                    "created federated identity credential {}",
                    intent.name
                )],
            ),
        };
        let body = desired.body();
        let written = match self
            .call(PUT_FIC, Access::Write, Method::PUT, &url, Some(&body))
            .await
        {
            Ok(answer) => answer.body,
            // ARM's 20-credential refusal is a 400 without a dedicated code: count to know.
            Err(e) if change == Change::Created && e.kind == ErrorKind::Invalid => {
                let count = self.count_credentials(&identity).await?;
                if count >= MAX_FEDERATED_CREDENTIALS {
                    return Err(Self::limit_reached(&identity, count, &e));
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        tracing::info!(
            identity = %identity.as_str(),
            credential = %intent.name,
            change = ?change,
            "wrote federated identity credential"
        );
        Ok(Ensured {
            state: state(&identity, &intent.name, &written),
            change,
            changes,
        })
    }

    async fn delete_federated_credential(
        &self,
        identity: &str,
        name: &str,
    ) -> Result<Deleted, CloudError> {
        let identity = IdentityId::parse(identity, DELETE_FIC)?;
        let url = self.url(&identity.fic_path(name));
        let writer = self.writer(&identity);
        let _writing = writer.lock().await;
        match self
            .call(DELETE_FIC, Access::Write, Method::DELETE, &url, None)
            .await
        {
            // ARM answers 204 when there was nothing to delete.
            Ok(answer) if answer.status == StatusCode::NO_CONTENT => Ok(Deleted::Absent),
            Ok(_) => {
                tracing::info!(
                    identity = %identity.as_str(),
                    credential = %name,
                    "deleted federated identity credential"
                );
                Ok(Deleted::Deleted)
            }
            Err(e) if e.is_not_found() => Ok(Deleted::Absent),
            Err(e) => Err(e),
        }
    }

    async fn identity_client_id(&self, identity: &str) -> Result<String, CloudError> {
        let identity = IdentityId::parse(identity, GET_IDENTITY)?;
        let answer = self
            .call(
                GET_IDENTITY,
                Access::Read,
                Method::GET,
                &self.url(identity.as_str()),
                None,
            )
            .await?;
        let found: Identity = answer.parse(GET_IDENTITY)?;
        Some(found.properties.client_id)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                CloudError::new(
                    ErrorKind::Unavailable,
                    Cloud::Azure,
                    GET_IDENTITY,
                    format!(
                        "ARM returned identity {} without a clientId",
                        identity.as_str()
                    ),
                )
            })
    }
}
