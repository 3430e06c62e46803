//! The IAM resources as they travel over the wire (field names and types from the `iam.v1`
//! discovery document), and `updateMask` handling on them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::error::ApiError;

/// `WorkloadIdentityPool`. Unknown fields are refused like Google does; output-only fields in a
/// request are accepted and ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Pool {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inline_certificate_issuance_config: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inline_trust_config: Option<Value>,
}

/// `WorkloadIdentityPoolProvider`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Provider {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire_time: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attribute_mapping: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribute_condition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc: Option<Oidc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saml: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x509: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_providers: Option<Value>,
}

/// `Oidc`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Oidc {
    #[serde(default)]
    pub issuer_uri: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_audiences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_json: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery_uri: Option<String>,
}

/// `Policy`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Policy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<Binding>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit_configs: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// `Binding`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Binding {
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Expr>,
}

/// `Expr`, a binding condition.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Expr {
    #[serde(default)]
    pub expression: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// `SetIamPolicyRequest`. `resource` is not in the discovery schema (it is the path), but
/// gRPC-transcoding clients such as google-cloud-iam-admin-v1 send the whole request message
/// as the body, so it is accepted; the path wins.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SetIamPolicyRequest {
    #[serde(default)]
    #[allow(dead_code, reason = "accepted like the path it duplicates")]
    pub resource: Option<String>,
    pub policy: Option<Policy>,
    #[serde(default)]
    pub update_mask: Option<String>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Converts a field-mask path to the JSON (lowerCamelCase) spelling; Google accepts both.
fn camel_path(path: &str) -> String {
    path.split('.')
        .map(super::proto3::json_name)
        .collect::<Vec<_>>()
        .join(".")
}

/// Applies `update_mask` (comma-separated paths, each in `allowed`) from `patch` onto
/// `current`: each masked field takes the patch's value, or is cleared when the patch omits it.
pub(crate) fn apply_update_mask<T: Serialize + DeserializeOwned>(
    current: &T,
    patch: &T,
    update_mask: Option<&str>,
    allowed: &[&str],
) -> Result<T, ApiError> {
    let mask = update_mask.map(str::trim).unwrap_or_default();
    if mask.is_empty() {
        return Err(ApiError::field_violation(
            "update_mask",
            "update_mask is required and must name at least one field.",
        ));
    }
    let to_value = |v: &T| {
        serde_json::to_value(v)
            .map_err(|e| ApiError::invalid_argument(format!("cannot encode resource: {e}")))
    };
    let mut target = to_value(current)?;
    let source = to_value(patch)?;
    for raw in mask.split(',') {
        let path = camel_path(raw.trim());
        if !allowed.contains(&path.as_str()) {
            return Err(ApiError::field_violation(
                "update_mask",
                format!(
                    "Invalid update_mask path \"{}\": field cannot be updated.",
                    raw.trim()
                ),
            ));
        }
        let parts: Vec<&str> = path.split('.').collect();
        let value = parts
            .iter()
            .try_fold(&source, |v, part| v.get(part))
            .cloned();
        set_path(&mut target, &parts, value);
    }
    serde_json::from_value(target)
        .map_err(|e| ApiError::invalid_argument(format!("invalid update: {e}")))
}

fn set_path(target: &mut Value, parts: &[&str], value: Option<Value>) {
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut node = target;
    for part in parents {
        if !node.get(*part).is_some_and(Value::is_object) {
            node[*part] = Value::Object(serde_json::Map::new());
        }
        node = &mut node[*part];
    }
    if let Some(object) = node.as_object_mut() {
        match value {
            Some(value) => object.insert((*last).to_owned(), value),
            None => object.remove(*last),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_mask_replaces_and_clears_only_named_fields() -> anyhow::Result<()> {
        let current = Pool {
            display_name: Some("old".into()),
            description: Some("keep".into()),
            ..Pool::default()
        };
        let patch = Pool {
            disabled: true,
            description: Some("ignored".into()),
            ..Pool::default()
        };
        let Ok(updated) = apply_update_mask(
            &current,
            &patch,
            Some("display_name,disabled"),
            &["displayName", "description", "disabled"],
        ) else {
            anyhow::bail!("mask refused");
        };
        assert_eq!(updated.display_name, None);
        assert!(updated.disabled);
        assert_eq!(updated.description.as_deref(), Some("keep"));
        assert!(apply_update_mask(&current, &patch, Some("state"), &["disabled"]).is_err());
        assert!(apply_update_mask(&current, &patch, None, &["disabled"]).is_err());
        Ok(())
    }
}
