//! The two matching rules the API uses, shared by the controllers and the webhook: Kubernetes
//! label selectors (a trust's `namespaceSelector`, a policy's `podSelector`) and the glob
//! patterns of the trusts' allowlists (`*` matches any run of characters). Pure, no IO.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::{access_policy::AccessPolicySpec, federated_trust::FederatedTrustSpec};

/// Whether `labels` satisfy `selector`, with Kubernetes semantics: `{}` selects everything,
/// every `matchLabels` pair and every `matchExpressions` requirement must hold. A malformed
/// requirement (an unknown operator, `In` without values, `Exists` with values, all of which
/// the API server refuses) is an error that says what is wrong.
pub fn evaluate_selector(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    let pairs_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let mut exprs_match = true;
    for expr in selector.match_expressions.iter().flatten() {
        let values = expr.values.as_deref().unwrap_or_default();
        let value = labels.get(&expr.key);
        let holds = match expr.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!(
                    "operator {} on key {} needs values",
                    expr.operator, expr.key
                ));
            }
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => !value.is_some_and(|v| values.contains(v)),
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!(
                    "operator {} on key {} takes no values",
                    expr.operator, expr.key
                ));
            }
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => return Err(format!("unknown operator {other:?} on key {}", expr.key)),
        };
        exprs_match &= holds;
    }
    Ok(pairs_match && exprs_match)
}

/// [`evaluate_selector`], where a malformed selector selects nothing.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    evaluate_selector(selector, labels).unwrap_or(false)
}

/// Whether an optional selector admits `labels`: absent selects nothing (a FederatedTrust with no
/// `namespaceSelector` admits no namespace).
pub fn optional_selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.is_some_and(|s| selector_matches(s, labels))
}

/// Whether `text` matches the glob `pattern`, where `*` matches any run of characters
/// (including `/` and none) and every other character matches itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == text;
    };
    if parts.len() == 1 {
        return pattern == text;
    }
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The first of `patterns` that `text` matches.
pub fn first_glob_match<'a>(patterns: &'a [String], text: &str) -> Option<&'a str> {
    patterns
        .iter()
        .map(String::as_str)
        .find(|p| glob_matches(p, text))
}

/// Why the identity a policy names is outside its trust's allowlists, if it is: the message
/// names the allowlist and what to change. `None` when the trust allows it, or when the policy
/// names no identity that an allowlist governs (a role Passport creates, `direct` GCP access, a
/// cloud the trust does not have: the callers report that mismatch themselves). The controllers
/// refuse such a policy before any cloud call, and the webhook injects nothing for it, so the
/// two never disagree on what a namespace may use.
pub fn identity_refusal(
    policy: &AccessPolicySpec,
    trust_name: &str,
    trust: &FederatedTrustSpec,
) -> Option<String> {
    if let (Some(access), Some(t)) = (&policy.aws, &trust.aws) {
        let arn = access.role_arn.as_deref()?;
        return first_glob_match(&t.allowed_role_arns, arn)
            .is_none()
            .then(|| {
                format!(
                    "role {arn} is not in FederatedTrust {trust_name}'s allowedRoleArns: ask the \
                 cluster admin to allow it, or let Passport create a role with roleName"
                )
            });
    }
    if let (Some(access), Some(t)) = (&policy.gcp, &trust.gcp) {
        let email = access.service_account.as_deref()?;
        return first_glob_match(&t.allowed_service_accounts, email)
            .is_none()
            .then(|| {
                format!(
                    "Google service account {email} is not in FederatedTrust {trust_name}'s \
                     allowedServiceAccounts: ask the cluster admin to allow it, or use direct: true"
                )
            });
    }
    if let (Some(access), Some(t)) = (&policy.azure, &trust.azure) {
        // ARM resource IDs are case-insensitive.
        let allowed: Vec<String> = t
            .allowed_identities
            .iter()
            .map(|p| p.to_ascii_lowercase())
            .collect();
        return first_glob_match(&allowed, &access.identity.to_ascii_lowercase())
            .is_none()
            .then(|| {
                format!(
                    "managed identity {} is not in FederatedTrust {trust_name}'s \
                     allowedIdentities: ask the cluster admin to allow it",
                    access.identity
                )
            });
    }
    if let (Some(access), Some(t)) = (&policy.oidc, &trust.oidc) {
        return first_glob_match(&t.allowed_audiences, &access.audience)
            .is_none()
            .then(|| {
                format!(
                    "audience {} is not in FederatedTrust {trust_name}'s allowedAudiences: ask \
                     the cluster admin to allow it",
                    access.audience
                )
            });
    }
    None
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_owned(),
            operator: operator.to_owned(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn an_empty_selector_selects_everything_and_an_absent_one_nothing() {
        let any = labels(&[("team", "a")]);
        assert!(selector_matches(&LabelSelector::default(), &any));
        assert!(optional_selector_matches(
            Some(&LabelSelector::default()),
            &any
        ));
        assert!(!optional_selector_matches(None, &any));
    }

    #[test]
    fn match_labels_and_expressions_must_all_hold() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("env", "prod")])),
            match_expressions: Some(vec![
                requirement("team", "In", &["a", "b"]),
                requirement("legacy", "DoesNotExist", &[]),
                requirement("tier", "NotIn", &["test"]),
            ]),
        };
        assert!(selector_matches(
            &selector,
            &labels(&[("env", "prod"), ("team", "a")])
        ));
        assert!(!selector_matches(
            &selector,
            &labels(&[("env", "dev"), ("team", "a")])
        ));
        assert!(!selector_matches(
            &selector,
            &labels(&[("env", "prod"), ("team", "c")])
        ));
        assert!(!selector_matches(
            &selector,
            &labels(&[("env", "prod"), ("team", "a"), ("legacy", "1")])
        ));
        assert!(!selector_matches(
            &selector,
            &labels(&[("env", "prod"), ("team", "a"), ("tier", "test")])
        ));
        let exists = LabelSelector {
            match_expressions: Some(vec![requirement("team", "Exists", &[])]),
            ..LabelSelector::default()
        };
        assert!(selector_matches(&exists, &labels(&[("team", "x")])));
        assert!(!selector_matches(&exists, &labels(&[])));
    }

    #[test]
    fn malformed_requirements_are_errors_and_select_nothing() {
        let selector = |op: &str, values: Option<Vec<&str>>| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".to_owned(),
                operator: op.to_owned(),
                values: values.map(|v| v.into_iter().map(str::to_owned).collect()),
            }]),
            match_labels: None,
        };
        let web = labels(&[("tier", "web")]);
        assert!(evaluate_selector(&selector("In", None), &web).is_err());
        assert!(evaluate_selector(&selector("Exists", Some(vec!["x"])), &web).is_err());
        let unknown = evaluate_selector(&selector("Near", None), &web).unwrap_err();
        assert!(unknown.contains("Near"), "{unknown}");
        assert!(!selector_matches(&selector("Near", None), &web));
    }

    #[test]
    fn globs_match_runs_of_any_characters() {
        assert!(glob_matches(
            "arn:aws:iam::1:role/apps/*",
            "arn:aws:iam::1:role/apps/a/b"
        ));
        assert!(!glob_matches(
            "arn:aws:iam::1:role/apps/*",
            "arn:aws:iam::1:role/ops/a"
        ));
        assert!(glob_matches(
            "*@my-project.iam.gserviceaccount.com",
            "a@my-project.iam.gserviceaccount.com"
        ));
        assert!(!glob_matches(
            "*@my-project.iam.gserviceaccount.com",
            "a@evil.iam.gserviceaccount.com"
        ));
        assert!(glob_matches("vault", "vault"));
        assert!(!glob_matches("vault", "vault2"));
        assert!(glob_matches(
            "https://*.snowflakecomputing.com",
            "https://x.snowflakecomputing.com"
        ));
        assert!(glob_matches("a*b*c", "abc"));
        assert!(!glob_matches("a*b*c", "acb"));
        assert!(
            !glob_matches("ab*ba", "aba"),
            "prefix and suffix may not overlap"
        );
        assert!(glob_matches("*", ""));
    }

    #[test]
    fn identity_refusals_name_the_allowlist_and_accept_what_it_allows() {
        let policy =
            |spec: serde_json::Value| -> AccessPolicySpec { serde_json::from_value(spec).unwrap() };
        let trust: FederatedTrustSpec = serde_json::from_value(serde_json::json!({
            "oidc": { "allowedAudiences": ["vault", "https://*.snowflakecomputing.com"] }
        }))
        .unwrap();
        let oidc = |audience: &str| {
            policy(serde_json::json!({
                "trustRef": {"name": "t"}, "serviceAccounts": ["a"], "oidc": {"audience": audience}
            }))
        };
        assert_eq!(identity_refusal(&oidc("vault"), "t", &trust), None);
        assert_eq!(
            identity_refusal(&oidc("https://x.snowflakecomputing.com"), "t", &trust),
            None
        );
        let refusal = identity_refusal(&oidc("sts.amazonaws.com"), "t", &trust).unwrap();
        assert!(
            refusal.contains("sts.amazonaws.com") && refusal.contains("t's allowedAudiences"),
            "{refusal}"
        );

        let azure: FederatedTrustSpec = serde_json::from_value(serde_json::json!({
            "azure": { "tenantId": "x", "allowedIdentities": ["/subscriptions/S/resourceGroups/apps/*"] }
        }))
        .unwrap();
        let identity = |id: &str| {
            policy(serde_json::json!({
                "trustRef": {"name": "t"}, "serviceAccounts": ["a"], "azure": {"identity": id}
            }))
        };
        assert_eq!(
            identity_refusal(
                &identity("/subscriptions/s/resourcegroups/APPS/x"),
                "t",
                &azure
            ),
            None,
            "ARM IDs compare case-insensitively"
        );
        assert!(
            identity_refusal(
                &identity("/subscriptions/s/resourceGroups/ops/x"),
                "t",
                &azure
            )
            .is_some()
        );
        // A policy for another cloud is the callers' CloudMismatch, not an allowlist refusal.
        assert_eq!(identity_refusal(&oidc("vault"), "t", &azure), None);
    }
}
