//! IAM policy documents, pure: the trust statement Passport writes, semantic comparison (IAM
//! percent-encodes and reorders what it returns), the size IAM charges against the trust-policy
//! quota, and editing Passport's own statements inside a role's trust policy while keeping every
//! other statement as it is.

use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cloud::TrustGrant;

/// The policy language version Passport writes.
pub const VERSION: &str = "2012-10-17";
/// The action web-identity federation needs.
pub const ASSUME_ROLE_WITH_WEB_IDENTITY: &str = "sts:AssumeRoleWithWebIdentity";
/// Sids of the statements Passport owns start with this.
pub const SID_PREFIX: &str = "Passport";

/// A policy document whose statements are kept as they were written, except Passport's own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyDocument {
    #[serde(rename = "Version", default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(rename = "Id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "Statement", deserialize_with = "one_or_many")]
    pub statements: Vec<Statement>,
}

/// One statement: its Sid, and the rest exactly as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "Sid", default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(flatten)]
    pub body: Map<String, Value>,
}

/// Passport's own trust statement, typed.
#[derive(Clone, Debug, PartialEq, Serialize)]
struct TrustStatement<'a> {
    #[serde(rename = "Sid")]
    sid: &'a str,
    #[serde(rename = "Effect")]
    effect: &'static str,
    #[serde(rename = "Principal")]
    principal: Federated<'a>,
    #[serde(rename = "Action")]
    action: &'static str,
    #[serde(rename = "Condition")]
    condition: BTreeMap<&'static str, BTreeMap<String, Value>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
struct Federated<'a> {
    #[serde(rename = "Federated")]
    federated: &'a str,
}

fn one_or_many<'de, D>(deserializer: D) -> Result<Vec<Statement>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Statement),
        Many(Vec<Statement>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// Why a document could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the policy document is not valid IAM JSON: {0}")]
pub struct ParseError(String);

impl PolicyDocument {
    /// Parses a document as IAM returns it (percent-encoded) or as written (plain JSON).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let decoded = decode(text);
        serde_json::from_str(&decoded).map_err(|e| ParseError(e.to_string()))
    }

    /// A trust policy holding only Passport's statement for `grant`.
    pub fn trust(sid: &str, grant: &TrustGrant) -> Self {
        Self {
            version: Some(VERSION.to_owned()),
            id: None,
            statements: vec![trust_statement(sid, grant)],
        }
    }

    /// This document with the statement `sid` set to Passport's statement for `grant`: replaced
    /// where it is, or appended. Every other statement is kept exactly as it was.
    pub fn with_statement(&self, sid: &str, grant: &TrustGrant) -> Self {
        let ours = trust_statement(sid, grant);
        let mut doc = self.clone();
        match doc
            .statements
            .iter_mut()
            .find(|s| s.sid.as_deref() == Some(sid))
        {
            Some(existing) => *existing = ours,
            None => doc.statements.push(ours),
        }
        doc
    }

    /// This document without the statement `sid`.
    pub fn without_statement(&self, sid: &str) -> Self {
        let mut doc = self.clone();
        doc.statements.retain(|s| s.sid.as_deref() != Some(sid));
        doc
    }

    pub fn has_statement(&self, sid: &str) -> bool {
        self.statements
            .iter()
            .any(|s| s.sid.as_deref() == Some(sid))
    }

    /// Compact JSON, as Passport sends it.
    pub fn to_json(&self) -> String {
        // Serialising plain strings and maps cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether two documents mean the same: key and statement order, percent-encoding and
    /// one-item lists against scalars do not matter.
    pub fn same_as(&self, other: &Self) -> bool {
        canonical_document(self) == canonical_document(other)
    }
}

fn trust_statement(sid: &str, grant: &TrustGrant) -> Statement {
    let host = issuer_host(&grant.issuer);
    let mut subjects: Vec<&str> = grant.subjects.iter().map(String::as_str).collect();
    subjects.sort_unstable();
    subjects.dedup();
    let sub = match subjects.as_slice() {
        [one] => Value::from(*one),
        many => Value::from(many.to_vec()),
    };
    let statement = TrustStatement {
        sid,
        effect: "Allow",
        principal: Federated {
            federated: &grant.provider_arn,
        },
        action: ASSUME_ROLE_WITH_WEB_IDENTITY,
        condition: BTreeMap::from([(
            "StringEquals",
            BTreeMap::from([
                (format!("{host}:aud"), Value::from(grant.audience.as_str())),
                (format!("{host}:sub"), sub),
            ]),
        )]),
    };
    // A typed statement always serialises to an object with a Sid.
    match serde_json::to_value(statement) {
        Ok(Value::Object(mut body)) => {
            body.remove("Sid");
            Statement {
                sid: Some(sid.to_owned()),
                body,
            }
        }
        _ => Statement {
            sid: Some(sid.to_owned()),
            body: Map::new(),
        },
    }
}

/// The issuer as IAM names it in condition keys and provider ARNs: no scheme, no trailing slash.
pub fn issuer_host(issuer: &str) -> &str {
    issuer
        .strip_prefix("https://")
        .unwrap_or(issuer)
        .trim_end_matches('/')
}

/// The size IAM charges against the trust-policy quota: characters, whitespace excluded.
pub fn size(document: &str) -> usize {
    document.chars().filter(|c| !c.is_whitespace()).count()
}

fn decode(text: &str) -> String {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        text.to_owned()
    } else {
        percent_decode_str(text).decode_utf8_lossy().into_owned()
    }
}

/// Whether two documents, as text (either may be percent-encoded), mean the same. Unparseable
/// documents are equal only when their decoded text is.
pub fn same_text(a: &str, b: &str) -> bool {
    match (PolicyDocument::parse(a), PolicyDocument::parse(b)) {
        (Ok(a), Ok(b)) => a.same_as(&b),
        _ => match (
            serde_json::from_str::<Value>(&decode(a)),
            serde_json::from_str::<Value>(&decode(b)),
        ) {
            (Ok(a), Ok(b)) => canonical(&a) == canonical(&b),
            _ => decode(a) == decode(b),
        },
    }
}

fn canonical_document(doc: &PolicyDocument) -> Value {
    match serde_json::to_value(doc) {
        Ok(value) => canonical(&value),
        Err(_) => Value::Null,
    }
}

/// The canonical form used for comparison: objects are key-sorted (serde_json's map), arrays
/// are sorted and deduplicated, and a one-item array is its item.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        Value::Array(items) => {
            let mut items: Vec<Value> = items.iter().map(canonical).collect();
            items.sort_by_key(|v| v.to_string());
            items.dedup();
            match items.len() {
                1 => items.remove(0),
                _ => Value::Array(items),
            }
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(subjects: &[&str]) -> TrustGrant {
        TrustGrant {
            provider_arn: "arn:aws:iam::123456789012:oidc-provider/oidc.example.com/c1".into(),
            issuer: "https://oidc.example.com/c1".into(),
            audience: "sts.amazonaws.com".into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_trust_statement_lists_every_subject_in_one_condition() {
        let doc = PolicyDocument::trust(
            "Passport",
            &grant(&["system:serviceaccount:pay:b", "system:serviceaccount:pay:a"]),
        );
        insta::assert_json_snapshot!("aws_trust_policy_two_subjects", doc);
    }

    #[test]
    fn iam_reordering_and_percent_encoding_are_not_a_difference() {
        let ours = PolicyDocument::trust("Passport", &grant(&["system:serviceaccount:pay:a"]));
        // What IAM gives back: percent-encoded, keys reordered, the subject as a one-item list.
        let returned = "%7B%22Statement%22%3A%5B%7B%22Condition%22%3A%7B%22StringEquals%22%3A%7B%22oidc.example.com%2Fc1%3Asub%22%3A%5B%22system%3Aserviceaccount%3Apay%3Aa%22%5D%2C%22oidc.example.com%2Fc1%3Aaud%22%3A%22sts.amazonaws.com%22%7D%7D%2C%22Action%22%3A%22sts%3AAssumeRoleWithWebIdentity%22%2C%22Principal%22%3A%7B%22Federated%22%3A%22arn%3Aaws%3Aiam%3A%3A123456789012%3Aoidc-provider%2Foidc.example.com%2Fc1%22%7D%2C%22Effect%22%3A%22Allow%22%2C%22Sid%22%3A%22Passport%22%7D%5D%2C%22Version%22%3A%222012-10-17%22%7D";
        let parsed = PolicyDocument::parse(returned).unwrap();
        assert!(parsed.same_as(&ours));
        assert!(same_text(returned, &ours.to_json()));
    }

    #[test]
    fn a_changed_subject_is_a_difference() {
        let a = PolicyDocument::trust("Passport", &grant(&["system:serviceaccount:pay:a"]));
        let b = PolicyDocument::trust("Passport", &grant(&["system:serviceaccount:pay:b"]));
        assert!(!a.same_as(&b));
    }

    #[test]
    fn statement_order_does_not_matter() {
        let one = r#"{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":"x"},{"Sid":"B","Effect":"Deny","Action":["y"]}]}"#;
        let two = r#"{"Statement":[{"Effect":"Deny","Action":"y","Sid":"B"},{"Action":"x","Sid":"A","Effect":"Allow"}],"Version":"2012-10-17"}"#;
        assert!(same_text(one, two));
        assert!(!same_text(one, &one.replace("Deny", "Allow")));
    }

    #[test]
    fn editing_passports_statement_keeps_the_others_as_written() {
        let foreign = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Ops","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"},{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        let doc = PolicyDocument::parse(foreign).unwrap();
        let edited = doc.with_statement("PassportPayApi", &grant(&["system:serviceaccount:pay:a"]));
        assert_eq!(edited.statements.len(), 3);
        assert_eq!(edited.statements[..2], doc.statements[..]);
        let again =
            edited.with_statement("PassportPayApi", &grant(&["system:serviceaccount:pay:b"]));
        assert_eq!(again.statements.len(), 3);
        assert!(!again.same_as(&edited));
        let removed = again.without_statement("PassportPayApi");
        assert!(removed.same_as(&doc));
    }

    #[test]
    fn a_single_statement_object_is_accepted() {
        let doc = PolicyDocument::parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}}"#,
        )
        .unwrap();
        assert_eq!(doc.statements.len(), 1);
        assert!(PolicyDocument::parse("not json").is_err());
    }

    #[test]
    fn size_ignores_whitespace_like_iam() {
        assert_eq!(size("{ \"a\" :\n \"b\" }"), 9);
        let doc = PolicyDocument::trust("Passport", &grant(&["system:serviceaccount:pay:a"]));
        let pretty = serde_json::to_string_pretty(&doc).unwrap();
        assert_eq!(size(&pretty), size(&doc.to_json()));
    }

    #[test]
    fn issuer_hosts_drop_the_scheme_and_trailing_slash() {
        assert_eq!(
            issuer_host("https://oidc.example.com/c1/"),
            "oidc.example.com/c1"
        );
        assert_eq!(issuer_host("https://127.0.0.1:6443"), "127.0.0.1:6443");
    }
}
