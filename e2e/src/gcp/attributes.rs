//! Provider attribute mapping and attribute conditions, evaluated as CEL with the `cel` crate
//! (through kube's `kube::core::cel` re-export), over `assertion` (the token's claims),
//! `google` and `attribute` as Google defines them.

use std::collections::BTreeMap;

use kube::core::cel::cel::{Context, Program, Value as Cel, to_value};
use serde_json::{Value, json};

use super::error::{ApiError, OAuthError};

const GOOGLE_KEYS: &[&str] = &[
    "google.subject",
    "google.groups",
    "google.display_name",
    "google.profile_photo",
];

/// What an attribute mapping produced for one token.
#[derive(Debug, Clone, Default)]
pub(crate) struct Mapped {
    pub subject: String,
    pub groups: Vec<String>,
    /// Custom attributes by name, without the `attribute.` prefix.
    pub attributes: BTreeMap<String, String>,
}

/// Checks an OIDC provider's `attributeMapping` as Google does at create/update time.
pub(crate) fn validate_mapping(mapping: &BTreeMap<String, String>) -> Result<(), ApiError> {
    let violation = |m: String| ApiError::field_violation("attribute_mapping", m);
    if !mapping.contains_key("google.subject") {
        return Err(violation(
            "attribute_mapping must include a mapping for google.subject.".into(),
        ));
    }
    let mut custom = 0;
    for (key, expression) in mapping {
        if let Some(name) = key.strip_prefix("attribute.") {
            custom += 1;
            let valid = !name.is_empty()
                && name.len() <= 100
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(violation(format!(
                    "Invalid attribute_mapping key '{key}': custom attribute names must be 1-100 characters of [a-z0-9_]."
                )));
            }
        } else if !GOOGLE_KEYS.contains(&key.as_str()) {
            return Err(violation(format!("Invalid attribute_mapping key '{key}'.")));
        }
        if expression.len() > 2048 {
            return Err(violation(format!(
                "The attribute_mapping expression for '{key}' exceeds 2048 characters."
            )));
        }
        Program::compile(expression).map_err(|e| {
            violation(format!(
                "Invalid attribute_mapping expression for '{key}': {e}"
            ))
        })?;
    }
    if custom > 50 {
        return Err(violation(
            "attribute_mapping can define at most 50 custom attributes.".into(),
        ));
    }
    Ok(())
}

/// Checks an `attributeCondition`: at most 4096 characters of valid CEL.
pub(crate) fn validate_condition(condition: &str) -> Result<(), ApiError> {
    let violation = |m: String| ApiError::field_violation("attribute_condition", m);
    if condition.len() > 4096 {
        return Err(violation(
            "attribute_condition cannot exceed 4096 characters.".into(),
        ));
    }
    Program::compile(condition)
        .map(|_| ())
        .map_err(|e| violation(format!("Invalid attribute_condition: {e}")))
}

fn run(expression: &str, variables: &[(&str, &Value)]) -> Result<Cel, String> {
    let program = Program::compile(expression).map_err(|e| e.to_string())?;
    let mut context = Context::default();
    for (name, value) in variables {
        context.add_variable_from_value(*name, to_value(value).map_err(|e| e.to_string())?);
    }
    program.execute(&context).map_err(|e| e.to_string())
}

/// Maps `claims` through `mapping`, then applies `condition` (if any).
pub(crate) fn evaluate(
    mapping: &BTreeMap<String, String>,
    condition: Option<&str>,
    claims: &Value,
) -> Result<Mapped, OAuthError> {
    let mut mapped = Mapped::default();
    for (key, expression) in mapping {
        let value = run(expression, &[("assertion", claims)]).map_err(|e| {
            OAuthError::invalid_grant(format!(
                "The attribute mapping for {key} could not be evaluated: {e}"
            ))
        })?;
        match key.as_str() {
            "google.subject" => match value {
                Cel::String(s) => mapped.subject = s.to_string(),
                other => {
                    return Err(OAuthError::invalid_grant(format!(
                        "The mapped attribute google.subject must be a string, not {other:?}."
                    )));
                }
            },
            "google.groups" => mapped.groups = strings(&value),
            _ => {
                if let (Some(name), Cel::String(s)) = (key.strip_prefix("attribute."), &value) {
                    mapped.attributes.insert(name.to_owned(), s.to_string());
                }
            }
        }
    }
    if mapped.subject.is_empty() {
        return Err(OAuthError::invalid_grant(
            "The mapped attribute google.subject is empty.",
        ));
    }
    if mapped.subject.len() > 127 {
        return Err(OAuthError::invalid_grant(
            "The mapped attribute google.subject exceeds the 127 bytes limit.",
        ));
    }
    if let Some(condition) = condition.filter(|c| !c.trim().is_empty()) {
        let google = json!({ "subject": mapped.subject, "groups": mapped.groups });
        let attribute = json!(mapped.attributes);
        let verdict = run(
            condition,
            &[
                ("assertion", claims),
                ("google", &google),
                ("attribute", &attribute),
            ],
        );
        if !matches!(verdict, Ok(Cel::Bool(true))) {
            return Err(OAuthError::new(
                "unauthorized_client",
                "The given credential is rejected by the attribute condition.",
            ));
        }
    }
    Ok(mapped)
}

fn strings(value: &Cel) -> Vec<String> {
    match value {
        Cel::List(items) => items
            .iter()
            .filter_map(|v| match v {
                Cel::String(s) => Some(s.to_string()),
                _ => None,
            })
            .collect(),
        Cel::String(s) => vec![s.to_string()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k8s_claims() -> Value {
        json!({
            "iss": "https://issuer.test",
            "sub": "system:serviceaccount:team-a:api",
            "kubernetes.io": { "namespace": "team-a", "serviceaccount": { "name": "api", "uid": "u-1" } },
        })
    }

    fn mapping() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("google.subject".to_owned(), "assertion.sub".to_owned()),
            (
                "attribute.namespace".to_owned(),
                "assertion['kubernetes.io']['namespace']".to_owned(),
            ),
            (
                "attribute.service_account_name".to_owned(),
                "assertion['kubernetes.io']['serviceaccount']['name']".to_owned(),
            ),
        ])
    }

    #[test]
    fn kubernetes_claims_map_to_subject_and_attributes() -> anyhow::Result<()> {
        let mapped = evaluate(&mapping(), None, &k8s_claims())
            .map_err(|e| anyhow::anyhow!(e.description))?;
        assert_eq!(mapped.subject, "system:serviceaccount:team-a:api");
        assert_eq!(mapped.attributes["namespace"], "team-a");
        assert_eq!(mapped.attributes["service_account_name"], "api");
        Ok(())
    }

    #[test]
    fn conditions_see_assertion_google_and_attribute() {
        let ok = "attribute.namespace == 'team-a' && google.subject.startsWith('system:') && assertion.iss == 'https://issuer.test'";
        assert!(evaluate(&mapping(), Some(ok), &k8s_claims()).is_ok());
        let refused = evaluate(
            &mapping(),
            Some("attribute.namespace == 'other'"),
            &k8s_claims(),
        );
        assert!(matches!(refused, Err(e) if e.error == "unauthorized_client"));
    }

    #[test]
    fn mappings_must_name_google_subject_and_compile() {
        assert!(validate_mapping(&mapping()).is_ok());
        let mut missing = mapping();
        missing.remove("google.subject");
        assert!(validate_mapping(&missing).is_err());
        let mut broken = mapping();
        broken.insert("attribute.x".into(), "assertion[".into());
        assert!(validate_mapping(&broken).is_err());
        let mut bad_key = mapping();
        bad_key.insert("attribute.Bad-Name".into(), "assertion.sub".into());
        assert!(validate_mapping(&bad_key).is_err());
    }
}
