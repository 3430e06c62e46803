//! The audit log: one JSON line (tracing target `audit`) for every cloud change, saying who
//! (policy, trust), what (cloud, object, operation), the digest of what was written, and how it
//! ended. `passport run` writes these lines to standard output, apart from the other logs.

use passport_crds::Cloud;
use sha2::{Digest as _, Sha256};

/// The tracing target of audit lines.
pub const TARGET: &str = "audit";

/// One cloud change, or one refusal to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub cloud: Cloud,
    /// The cloud object: an ARN, an email, a resource name.
    pub object: String,
    /// `create`, `update`, `delete`, or `keep` (not Passport's to change).
    pub operation: &'static str,
    /// What changed, in words.
    pub changes: Vec<String>,
    /// sha256 (first 16 hex digits) of the desired document written, `-` for deletions.
    pub digest: String,
    /// `ok`, `kept` or the error.
    pub outcome: String,
}

impl Record {
    pub fn change(
        cloud: Cloud,
        object: &str,
        operation: &'static str,
        changes: Vec<String>,
        after: &impl serde::Serialize,
    ) -> Self {
        Self {
            cloud,
            object: object.to_owned(),
            operation,
            changes,
            digest: if operation == "delete" {
                "-".to_owned()
            } else {
                digest(after)
            },
            outcome: "ok".to_owned(),
        }
    }

    pub fn kept(cloud: Cloud, object: &str, why: &str) -> Self {
        Self {
            cloud,
            object: object.to_owned(),
            operation: "keep",
            changes: vec![why.to_owned()],
            digest: "-".to_owned(),
            outcome: "kept".to_owned(),
        }
    }

    /// The record of an ensure: None when it changed nothing.
    pub fn ensured<T>(
        cloud: Cloud,
        object: &str,
        ensured: &crate::cloud::Ensured<T>,
        after: &impl serde::Serialize,
    ) -> Option<Self> {
        let operation = match ensured.change {
            crate::cloud::Change::Unchanged => return None,
            crate::cloud::Change::Created => "create",
            crate::cloud::Change::Updated => "update",
        };
        Some(Self::change(
            cloud,
            object,
            operation,
            ensured.changes.clone(),
            after,
        ))
    }

    /// The record of a delete: None when there was nothing to delete.
    pub fn deleted(cloud: Cloud, object: &str, deleted: &crate::cloud::Deleted) -> Option<Self> {
        match deleted {
            crate::cloud::Deleted::Deleted => {
                Some(Self::change(cloud, object, "delete", Vec::new(), &()))
            }
            crate::cloud::Deleted::Kept { why } => Some(Self::kept(cloud, object, why)),
            crate::cloud::Deleted::Absent => None,
        }
    }

    /// A failed change: the cloud and operation of the error.
    pub fn failed(error: &crate::cloud::CloudError, object: &str) -> Self {
        Self {
            cloud: error.cloud,
            object: object.to_owned(),
            operation: error.operation,
            changes: Vec::new(),
            digest: "-".to_owned(),
            outcome: format!("error: {}", error.message),
        }
    }

    /// The Event note for this change.
    pub fn note(&self) -> String {
        let mut note = format!("{} {} {}", self.operation, self.cloud, self.object);
        if !self.changes.is_empty() {
            note.push_str(": ");
            note.push_str(&self.changes.join("; "));
        }
        note
    }
}

/// Who asked for a change.
#[derive(Clone, Debug)]
pub struct Who<'a> {
    /// `FederatedTrust` or `AccessPolicy`.
    pub kind: &'static str,
    /// `namespace/name` for policies, the name for trusts.
    pub resource: &'a str,
    pub trust: &'a str,
    /// Set when a periodic resync found the cloud changed behind Passport's back.
    pub drift: bool,
}

/// Writes the audit line of one record: with `passport run`, a JSON object on standard output.
pub fn emit(who: &Who<'_>, record: &Record) {
    tracing::info!(
        target: TARGET,
        kind = who.kind,
        resource = who.resource,
        trust = who.trust,
        cloud = record.cloud.as_str(),
        object = %record.object,
        operation = record.operation,
        changes = %record.changes.join("; "),
        digest = %record.digest,
        drift = who.drift,
        outcome = %record.outcome,
        "cloud change"
    );
}

/// sha256 of a document's JSON, first 16 hex digits.
pub fn digest(document: &impl serde::Serialize) -> String {
    let bytes = serde_json::to_vec(document).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_names_the_change_and_digests_what_was_written() {
        let record = Record::change(
            Cloud::Aws,
            "arn:aws:iam::1:role/x",
            "update",
            vec!["trust policy".to_owned()],
            &serde_json::json!({"a": 1}),
        );
        assert_eq!(record.digest.len(), 16);
        assert_eq!(record.digest, digest(&serde_json::json!({"a": 1})));
        assert_ne!(record.digest, digest(&serde_json::json!({"a": 2})));
        assert_eq!(
            record.note(),
            "update aws arn:aws:iam::1:role/x: trust policy"
        );
        let deleted = Record::change(Cloud::Gcp, "sa@p", "delete", Vec::new(), &());
        assert_eq!(deleted.digest, "-");
    }
}
