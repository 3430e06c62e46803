//! The stack's IAM endpoint: a thin proxy in front of moto that adds what real IAM checks and moto
//! does not (trust-policy quota and syntax, federated principals that must exist, client-ID edits
//! on OIDC providers, `NoSuchEntity` on deleting a missing provider) and forwards the rest.

use std::sync::Arc;

use aws_sdk_iam::error::ProvideErrorMetadata as _;
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};

use super::{moto::RelayError, query, quota, trust};

/// The XML namespace of IAM responses.
pub const NAMESPACE: &str = "https://iam.amazonaws.com/doc/2010-05-08/";

/// IAM's limits on an OIDC provider's client IDs.
const MAX_CLIENT_IDS: usize = 100;
const MAX_CLIENT_ID_LEN: usize = 255;

/// What the IAM front needs: where moto is, and the account's trust-policy quota.
#[derive(Clone)]
pub struct IamFront {
    moto_url: String,
    http: reqwest::Client,
    moto: aws_sdk_iam::Client,
    quota: usize,
    // Client-ID edits are read-modify-write on moto; serialise them as IAM does per provider.
    edits: Arc<tokio::sync::Mutex<()>>,
}

impl IamFront {
    pub fn new(moto_url: &str, quota: usize) -> anyhow::Result<Self> {
        Ok(Self {
            moto_url: moto_url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
            moto: super::sdk::iam_client(moto_url),
            quota,
            edits: Arc::default(),
        })
    }

    /// The router (not yet wrapped with fault injection).
    pub fn router(self) -> Router {
        Router::new().fallback(handle).with_state(self)
    }
}

type Reply = Result<Response, Response>;

fn iam_error(status: StatusCode, code: &str, message: &str) -> Response {
    query::error(NAMESPACE, status, code, message)
}

async fn handle(
    State(front): State<IamFront>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = query::Params::parse(uri.query(), &body).unwrap_or_default();
    let checked = match params.get("Action") {
        Some("CreateRole") => {
            front
                .check_trust_policy(params.get("AssumeRolePolicyDocument"))
                .await
        }
        Some("UpdateAssumeRolePolicy") => {
            front.check_trust_policy(params.get("PolicyDocument")).await
        }
        Some("AddClientIDToOpenIDConnectProvider") => {
            return front
                .edit_client_ids(&params, true)
                .await
                .unwrap_or_else(|e| e);
        }
        Some("RemoveClientIDFromOpenIDConnectProvider") => {
            return front
                .edit_client_ids(&params, false)
                .await
                .unwrap_or_else(|e| e);
        }
        Some("DeleteOpenIDConnectProvider") => front.provider_exists(&params).await,
        _ => Ok(()),
    };
    match checked {
        Ok(()) => front.forward(method, &uri, &headers, body).await,
        Err(refusal) => refusal,
    }
}

impl IamFront {
    async fn check_trust_policy(&self, document: Option<&str>) -> Result<(), Response> {
        let Some(document) = document else {
            // Let moto report the missing parameter in its own words.
            return Ok(());
        };
        quota::check_quota(document, self.quota)
            .map_err(|e| iam_error(StatusCode::CONFLICT, "LimitExceeded", &e.to_string()))?;
        let malformed =
            |message: &str| iam_error(StatusCode::BAD_REQUEST, "MalformedPolicyDocument", message);
        let policy = trust::Policy::parse(document).map_err(|e| malformed(&e.to_string()))?;
        // IAM resolves federated principals when the policy is written: an OIDC provider must
        // exist before a role can trust it.
        for principal in policy.federated_principals() {
            if !principal.contains(":oidc-provider/") {
                continue;
            }
            let found = self
                .moto
                .get_open_id_connect_provider()
                .open_id_connect_provider_arn(&principal)
                .send()
                .await;
            if found.is_err() {
                return Err(malformed(&format!(
                    "Invalid principal in policy: \"Federated\":\"{principal}\""
                )));
            }
        }
        Ok(())
    }

    async fn provider_exists(&self, params: &query::Params) -> Result<(), Response> {
        let arn = params.get("OpenIDConnectProviderArn").unwrap_or_default();
        self.read_provider(arn).await.map(|_| ())
    }

    async fn read_provider(
        &self,
        arn: &str,
    ) -> Result<
        aws_sdk_iam::operation::get_open_id_connect_provider::GetOpenIdConnectProviderOutput,
        Response,
    > {
        self.moto
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(arn)
            .send()
            .await
            .map_err(|e| match e.code() {
                Some("NoSuchEntity") => iam_error(
                    StatusCode::NOT_FOUND,
                    "NoSuchEntity",
                    &format!("OpenIDConnect Provider not found for arn {arn}"),
                ),
                _ => iam_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ServiceFailure",
                    &format!(
                        "reading the provider from moto: {}",
                        e.message().unwrap_or("error")
                    ),
                ),
            })
    }

    /// `AddClientIDToOpenIDConnectProvider` / `RemoveClientIDFromOpenIDConnectProvider`, which
    /// moto does not implement: moto can only set client IDs at creation, so the provider is
    /// re-created under the same ARN with its thumbprints and tags.
    async fn edit_client_ids(&self, params: &query::Params, add: bool) -> Reply {
        let action = params.get("Action").unwrap_or_default().to_owned();
        let arn = params.get("OpenIDConnectProviderArn").unwrap_or_default();
        let Some(client_id) = params.get("ClientID") else {
            return Err(iam_error(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                "1 validation error detected: Value null at 'clientID' failed to satisfy constraint: Member must not be null",
            ));
        };
        if client_id.is_empty() || client_id.chars().count() > MAX_CLIENT_ID_LEN {
            return Err(iam_error(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                "1 validation error detected: Value at 'clientID' failed to satisfy constraint: Member must have length less than or equal to 255",
            ));
        }
        let _guard = self.edits.lock().await;
        let provider = self.read_provider(arn).await?;
        let mut ids = provider.client_id_list().to_vec();
        let present = ids.iter().any(|id| id == client_id);
        // Both calls are idempotent in IAM: adding a present ID or removing an absent one is Ok.
        if add == present {
            return Ok(query::success(NAMESPACE, &action, None));
        }
        if add {
            if ids.len() >= MAX_CLIENT_IDS {
                return Err(iam_error(
                    StatusCode::CONFLICT,
                    "LimitExceeded",
                    "Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: 100",
                ));
            }
            ids.push(client_id.to_owned());
        } else {
            ids.retain(|id| id != client_id);
        }
        let url = provider.url().unwrap_or_default();
        let url = if url.starts_with("https://") {
            url.to_owned()
        } else {
            format!("https://{url}")
        };
        let moto_failed = |what: &str, message: Option<&str>| {
            iam_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceFailure",
                &format!("{what} in moto: {}", message.unwrap_or("error")),
            )
        };
        self.moto
            .delete_open_id_connect_provider()
            .open_id_connect_provider_arn(arn)
            .send()
            .await
            .map_err(|e| moto_failed("deleting the provider", e.message()))?;
        self.moto
            .create_open_id_connect_provider()
            .url(url)
            .set_client_id_list(Some(ids))
            .set_thumbprint_list(Some(provider.thumbprint_list().to_vec()))
            .set_tags((!provider.tags().is_empty()).then(|| provider.tags().to_vec()))
            .send()
            .await
            .map_err(|e| moto_failed("re-creating the provider", e.message()))?;
        Ok(query::success(NAMESPACE, &action, None))
    }

    async fn forward(
        &self,
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let url = format!("{}{path}", self.moto_url);
        match super::moto::relay(&self.http, method, url, headers, &[], body, false).await {
            Ok(answer) => answer.into_response(),
            Err(RelayError::Unreachable(e)) => iam_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &format!("moto is not reachable: {e}"),
            ),
            Err(RelayError::Unreadable(e)) => iam_error(
                StatusCode::BAD_GATEWAY,
                "ServiceFailure",
                &format!("reading moto's answer: {e}"),
            ),
        }
    }
}
