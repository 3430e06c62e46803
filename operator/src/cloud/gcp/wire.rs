//! Workload identity pools and providers as they travel over the IAM REST API (the writable
//! fields Passport manages, in proto3 JSON), the bodies Passport wants, and the pure diff that
//! turns observed versus desired into an `updateMask` of only the changed fields.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cloud::{Owner, WorkloadIdentityIntent};

/// Google's limit on `displayName` of pools and providers.
pub const DISPLAY_NAME_MAX: usize = 32;
/// Google's limit on `description` of pools and providers.
pub const DESCRIPTION_MAX: usize = 256;

/// `state` of a soft-deleted pool or provider.
pub const DELETED: &str = "DELETED";

/// The writable fields of a `WorkloadIdentityPool` that Passport manages. Reading ignores
/// every other field; `disabled` is never written, so that an administrator can disable a pool
/// as an emergency stop without Passport turning it back on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolBody {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// The writable fields of a `WorkloadIdentityPoolProvider` that Passport manages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderBody {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attribute_mapping: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute_condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcBody>,
}

/// `Oidc` of a provider.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OidcBody {
    #[serde(default)]
    pub issuer_uri: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_audiences: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_json: Option<String>,
}

/// A pool or provider as read back: the fields Passport manages plus `name` and `state`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observed<T> {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(flatten)]
    pub body: T,
}

impl<T> Observed<T> {
    pub fn is_deleted(&self) -> bool {
        self.state.as_deref() == Some(DELETED)
    }
}

/// A long-running `Operation` (only the fields Passport reads).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub error: Option<OperationError>,
    #[serde(default)]
    pub response: Option<Value>,
}

/// `google.rpc.Status` in an operation.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct OperationError {
    #[serde(default)]
    pub code: i32,
    #[serde(default)]
    pub message: String,
}

/// The `displayName` Passport gives what it creates: the owner's name, cut to Google's limit.
pub fn display_name(owner: &Owner) -> String {
    let full = format!("Passport {}", owner.name);
    full.chars().take(DISPLAY_NAME_MAX).collect()
}

/// The pool Passport wants for `intent`.
pub fn desired_pool(intent: &WorkloadIdentityIntent) -> PoolBody {
    PoolBody {
        display_name: display_name(&intent.owner),
        description: intent.owner.description(),
    }
}

/// The provider Passport wants for `intent`.
pub fn desired_provider(intent: &WorkloadIdentityIntent) -> ProviderBody {
    ProviderBody {
        display_name: display_name(&intent.owner),
        description: intent.owner.description(),
        attribute_mapping: intent.attribute_mapping.clone(),
        attribute_condition: intent.attribute_condition.clone(),
        oidc: Some(OidcBody {
            issuer_uri: intent.issuer.clone(),
            allowed_audiences: intent.allowed_audiences.clone(),
            jwks_json: intent.jwks_json.clone(),
        }),
    }
}

/// The `updateMask` paths whose values differ between `observed` and `desired` pools.
pub fn pool_mask(observed: &PoolBody, desired: &PoolBody) -> Vec<&'static str> {
    let mut mask = Vec::new();
    if observed.display_name != desired.display_name {
        mask.push("displayName");
    }
    if observed.description != desired.description {
        mask.push("description");
    }
    mask
}

/// The `updateMask` paths whose values differ between `observed` and `desired` providers.
/// Audiences compare as sets and JWKS as parsed keys, since Google may return either in
/// another order or spelling than Passport sent.
pub fn provider_mask(observed: &ProviderBody, desired: &ProviderBody) -> Vec<&'static str> {
    let mut mask = Vec::new();
    if observed.display_name != desired.display_name {
        mask.push("displayName");
    }
    if observed.description != desired.description {
        mask.push("description");
    }
    if observed.attribute_mapping != desired.attribute_mapping {
        mask.push("attributeMapping");
    }
    if non_empty(&observed.attribute_condition) != non_empty(&desired.attribute_condition) {
        mask.push("attributeCondition");
    }
    let empty = OidcBody::default();
    let seen = observed.oidc.as_ref().unwrap_or(&empty);
    let want = desired.oidc.as_ref().unwrap_or(&empty);
    if seen.issuer_uri != want.issuer_uri {
        mask.push("oidc.issuerUri");
    }
    let set = |list: &[String]| list.iter().cloned().collect::<BTreeSet<_>>();
    if set(&seen.allowed_audiences) != set(&want.allowed_audiences) {
        mask.push("oidc.allowedAudiences");
    }
    if !same_jwks(seen.jwks_json.as_deref(), want.jwks_json.as_deref()) {
        mask.push("oidc.jwksJson");
    }
    mask
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// Whether two `jwksJson` values hold the same keys: parsed, key order and member order
/// ignored. Unparseable text compares as text.
pub fn same_jwks(a: Option<&str>, b: Option<&str>) -> bool {
    match (a.filter(|s| !s.is_empty()), b.filter(|s| !s.is_empty())) {
        (None, None) => true,
        (Some(a), Some(b)) => match (key_set(a), key_set(b)) {
            (Some(a), Some(b)) => a == b,
            _ => a == b,
        },
        _ => false,
    }
}

/// The JWKS's keys, each as canonical JSON text (serde_json sorts object members).
fn key_set(jwks: &str) -> Option<BTreeSet<String>> {
    let parsed: Value = serde_json::from_str(jwks).ok()?;
    let keys = parsed.get("keys")?.as_array()?;
    keys.iter()
        .map(|key| serde_json::to_string(&sort(key)).ok())
        .collect()
}

/// `value` with every object's members in key order, whatever serde_json's map type.
fn sort(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, Value> = map.iter().map(|(k, v)| (k, sort(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sort).collect()),
        other => other.clone(),
    }
}

/// `body` with only the masked fields, as the PATCH body: the mask says what changes, and the
/// body carries nothing else, so a reader of the request sees exactly the change.
pub fn masked(body: &impl Serialize, mask: &[&str]) -> Value {
    let full = serde_json::to_value(body).unwrap_or(Value::Null);
    let mut out = serde_json::Map::new();
    for path in mask {
        let mut parts = path.split('.');
        let Some(head) = parts.next() else { continue };
        match (parts.next(), full.get(head)) {
            (None, Some(value)) => {
                out.insert(head.to_owned(), value.clone());
            }
            (Some(leaf), Some(parent)) => {
                if let Some(value) = parent.get(leaf) {
                    let entry = out
                        .entry(head.to_owned())
                        .or_insert_with(|| Value::Object(serde_json::Map::new()));
                    if let Some(object) = entry.as_object_mut() {
                        object.insert(leaf.to_owned(), value.clone());
                    }
                }
            }
            // A cleared field is sent absent: the mask names it, so Google clears it.
            _ => {}
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent() -> WorkloadIdentityIntent {
        WorkloadIdentityIntent {
            project_number: "123".into(),
            pool_id: "passport-pool".into(),
            provider_id: "cluster".into(),
            issuer: "https://issuer.example".into(),
            allowed_audiences: vec!["a".into(), "b".into()],
            attribute_mapping: BTreeMap::from([("google.subject".into(), "assertion.sub".into())]),
            attribute_condition: None,
            jwks_json: Some(r#"{"keys":[{"kty":"RSA","kid":"1","n":"x","e":"AQAB"}]}"#.into()),
            owner: Owner::trust("prod", "gcp-prod"),
        }
    }

    #[test]
    fn an_unchanged_provider_has_an_empty_mask() {
        let desired = desired_provider(&intent());
        let mut observed = desired.clone();
        if let Some(oidc) = observed.oidc.as_mut() {
            oidc.allowed_audiences.reverse();
            oidc.jwks_json =
                Some(r#"{ "keys": [ {"e":"AQAB","n":"x","kid":"1","kty":"RSA"} ] }"#.into());
        }
        observed.attribute_condition = Some(String::new());
        assert_eq!(provider_mask(&observed, &desired), Vec::<&str>::new());
    }

    #[test]
    fn only_changed_fields_enter_the_mask() {
        let desired = desired_provider(&intent());
        let mut observed = desired.clone();
        observed.attribute_condition = Some("true".into());
        if let Some(oidc) = observed.oidc.as_mut() {
            oidc.jwks_json =
                Some(r#"{"keys":[{"kty":"RSA","kid":"2","n":"y","e":"AQAB"}]}"#.into());
        }
        assert_eq!(
            provider_mask(&observed, &desired),
            vec!["attributeCondition", "oidc.jwksJson"]
        );
        let body = masked(&desired, &provider_mask(&observed, &desired));
        // The condition is cleared (absent but masked); only the JWKS travels inside `oidc`.
        assert_eq!(
            body,
            serde_json::json!({"oidc": {"jwksJson": desired.oidc.and_then(|o| o.jwks_json)}})
        );
    }

    #[test]
    fn pool_labels_are_compared_field_by_field() {
        let desired = desired_pool(&intent());
        let observed = PoolBody {
            display_name: "hand made".into(),
            ..desired.clone()
        };
        assert_eq!(pool_mask(&observed, &desired), vec!["displayName"]);
        assert_eq!(pool_mask(&desired, &desired), Vec::<&str>::new());
    }

    #[test]
    fn jwks_compare_as_key_sets() {
        let a = r#"{"keys":[{"kid":"1"},{"kid":"2"}]}"#;
        let b = r#"{"keys":[{"kid":"2"},{"kid":"1"}]}"#;
        assert!(same_jwks(Some(a), Some(b)));
        assert!(!same_jwks(Some(a), Some(r#"{"keys":[{"kid":"1"}]}"#)));
        assert!(!same_jwks(Some(a), None));
        assert!(same_jwks(None, Some("")));
    }

    #[test]
    fn display_names_fit_googles_limit() {
        let owner = Owner::trust("prod", &"x".repeat(60));
        assert_eq!(display_name(&owner).chars().count(), DISPLAY_NAME_MAX);
    }
}
