//! Azure Resource Manager over reqwest: resource IDs and URLs, one authenticated request, and
//! ARM's `{"error":{"code","message"}}` bodies mapped to [`CloudError`].

use passport_crds::Cloud;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;

use super::super::{CloudError, ErrorKind, error::kind_for_status};

/// The ManagedIdentity api-version Passport speaks (the vendored swagger's stable version).
pub const API_VERSION: &str = "2023-01-31";

/// ARM's code for a second concurrent FIC write to one identity.
pub const CONCURRENT_FIC_WRITES: &str =
    "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity";

const IDENTITY_PROVIDER: &str = "/providers/microsoft.managedidentity/userassignedidentities/";

/// A user-assigned identity's ARM resource ID, checked for shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityId(String);

impl IdentityId {
    /// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}`.
    pub fn parse(id: &str, operation: &'static str) -> Result<Self, CloudError> {
        let trimmed = id.trim_end_matches('/');
        let lower = trimmed.to_ascii_lowercase();
        let well_formed = lower.starts_with("/subscriptions/")
            && lower.contains("/resourcegroups/")
            && lower
                .split_once(IDENTITY_PROVIDER)
                .is_some_and(|(_, name)| !name.is_empty() && !name.contains('/'))
            && !trimmed.contains(['?', '#', ' ']);
        if !well_formed {
            return Err(CloudError::new(
                ErrorKind::Invalid,
                Cloud::Azure,
                operation,
                format!(
                    "'{id}' is not a user-assigned identity ID (/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>)"
                ),
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// ARM IDs are case-insensitive: the key for per-identity state.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    pub fn fic_path(&self, name: &str) -> String {
        format!("{}/federatedIdentityCredentials/{name}", self.0)
    }

    pub fn fics_path(&self) -> String {
        format!("{}/federatedIdentityCredentials", self.0)
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// One ARM answer: status and body (Null when empty).
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// The body as `T`; an answer of another shape means ARM (or a proxy) misbehaved.
    pub fn parse<T: DeserializeOwned>(&self, operation: &'static str) -> Result<T, CloudError> {
        T::deserialize(&self.body).map_err(|e| {
            CloudError::new(
                ErrorKind::Unavailable,
                Cloud::Azure,
                operation,
                format!("unexpected ARM answer: {e}"),
            )
        })
    }
}

/// An ARM resource, as far as Passport reads it.
#[derive(Deserialize)]
pub struct Resource {
    #[serde(default)]
    pub id: Option<String>,
}

/// A page of an ARM list.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    #[serde(default)]
    pub value: Vec<Value>,
    #[serde(default)]
    pub next_link: Option<String>,
}

/// A user-assigned identity, as far as Passport reads it.
#[derive(Deserialize)]
pub struct Identity {
    pub properties: IdentityProperties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityProperties {
    #[serde(default)]
    pub client_id: String,
}

/// Sends one ARM request. Success is any 2xx; anything else is a [`CloudError`] with ARM's code
/// and message.
pub async fn send(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    token: &str,
    body: Option<&Value>,
    operation: &'static str,
) -> Result<Answer, CloudError> {
    let mut request = http.request(method, url).bearer_auth(token);
    // A `nextLink` already names its api-version.
    if !url.contains("api-version=") {
        request = request.query(&[("api-version", API_VERSION)]);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.map_err(|e| {
        CloudError::new(
            ErrorKind::Unavailable,
            Cloud::Azure,
            operation,
            format!("request to ARM failed: {e}"),
        )
    })?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| {
        CloudError::new(
            ErrorKind::Unavailable,
            Cloud::Azure,
            operation,
            format!("reading ARM's answer failed: {e}"),
        )
    })?;
    if status.is_success() {
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                CloudError::new(
                    ErrorKind::Unavailable,
                    Cloud::Azure,
                    operation,
                    format!("unreadable ARM answer: {e}"),
                )
            })?
        };
        return Ok(Answer { status, body });
    }
    Err(error_from(status, &bytes, operation))
}

/// Maps an ARM error answer to a [`CloudError`] carrying ARM's own code and message.
pub fn error_from(status: StatusCode, body: &[u8], operation: &'static str) -> CloudError {
    let detail = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|b| b.error);
    let kind = kind_for_status(status.as_u16());
    match detail {
        Some(detail) => {
            let message = if detail.message.is_empty() {
                format!("ARM answered {status}")
            } else {
                detail.message
            };
            let error = CloudError::new(kind, Cloud::Azure, operation, message);
            if detail.code.is_empty() {
                error
            } else {
                error.with_code(detail.code)
            }
        }
        None => CloudError::new(
            kind,
            Cloud::Azure,
            operation,
            format!("ARM answered {status}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app";

    #[test]
    fn identity_ids_are_checked_and_keyed_in_lower_case() {
        let id = IdentityId::parse(ID, "Get").unwrap();
        assert_eq!(
            id.fic_path("x"),
            format!("{ID}/federatedIdentityCredentials/x")
        );
        assert_eq!(id.key(), ID.to_ascii_lowercase());
        let upper = IdentityId::parse(&ID.replace("resourceGroups", "RESOURCEGROUPS"), "Get");
        assert_eq!(upper.map(|i| i.key()), Ok(id.key()));
        for bad in [
            "app",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a",
            &format!("{ID}/federatedIdentityCredentials/x"),
            &format!("{ID}?api-version=1"),
        ] {
            let err = IdentityId::parse(bad, "Get").unwrap_err();
            assert_eq!(err.kind, ErrorKind::Invalid, "{bad}");
        }
    }

    #[test]
    fn arm_errors_keep_their_code_and_message() {
        let body = br#"{"error":{"code":"AuthorizationFailed","message":"no access"}}"#;
        let err = error_from(
            StatusCode::FORBIDDEN,
            body,
            "PutFederatedIdentityCredential",
        );
        assert_eq!(err.kind, ErrorKind::AccessDenied);
        assert_eq!(err.code.as_deref(), Some("AuthorizationFailed"));
        assert_eq!(err.message, "no access");
        let plain = error_from(StatusCode::BAD_GATEWAY, b"<html>", "Get");
        assert_eq!(plain.kind, ErrorKind::Unavailable);
        assert_eq!(plain.code, None);
    }
}
