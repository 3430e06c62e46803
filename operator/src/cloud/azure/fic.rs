//! The federated identity credential document Passport writes, and the semantic comparison that
//! decides whether an observed credential needs a write. Pure: no IO.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{Value, json};

use super::super::FederatedCredentialIntent;

/// The fields of a credential that Passport owns. ARM's read-only fields (`id`, `name`, `type`,
/// `systemData`) are not part of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FicSpec {
    pub issuer: String,
    pub subject: String,
    /// A set: ARM does not promise the order, and Passport writes exactly one.
    pub audiences: BTreeSet<String>,
}

#[derive(Deserialize)]
struct Observed {
    #[serde(default)]
    properties: ObservedProperties,
}

#[derive(Deserialize, Default)]
struct ObservedProperties {
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    audiences: Vec<String>,
}

impl FicSpec {
    pub fn desired(intent: &FederatedCredentialIntent) -> Self {
        Self {
            issuer: intent.issuer.clone(),
            subject: intent.subject.clone(),
            audiences: BTreeSet::from([intent.audience.clone()]),
        }
    }

    /// The spec of a credential as ARM returns it.
    pub fn observed(body: &Value) -> Self {
        let props = Observed::deserialize(body)
            .map(|o| o.properties)
            .unwrap_or_default();
        Self {
            issuer: props.issuer,
            subject: props.subject,
            audiences: props.audiences.into_iter().collect(),
        }
    }

    /// The PUT body: `{"properties":{"issuer","subject","audiences"}}`.
    pub fn body(&self) -> Value {
        json!({
            "properties": {
                "issuer": self.issuer,
                "subject": self.subject,
                "audiences": self.audiences,
            }
        })
    }

    /// What differs from `observed`, in words, for the Event and the audit line. Issuer and
    /// subject compare exactly (Entra matches them case-sensitively, trailing slash included).
    pub fn changes_from(&self, observed: &Self) -> Vec<String> {
        let mut changes = Vec::new();
        if self.issuer != observed.issuer {
            changes.push(format!("issuer {} -> {}", observed.issuer, self.issuer));
        }
        if self.subject != observed.subject {
            changes.push(format!("subject {} -> {}", observed.subject, self.subject));
        }
        if self.audiences != observed.audiences {
            changes.push(format!(
                "audiences {:?} -> {:?}",
                observed.audiences, self.audiences
            ));
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent() -> FederatedCredentialIntent {
        FederatedCredentialIntent {
            identity: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app".into(),
            name: "prod-apps-api".into(),
            issuer: "https://issuer.test/".into(),
            subject: "system:serviceaccount:apps:api".into(),
            audience: "api://AzureADTokenExchange".into(),
        }
    }

    #[test]
    fn read_only_fields_do_not_count_as_a_change() {
        let desired = FicSpec::desired(&intent());
        let observed = FicSpec::observed(&json!({
            "id": "/subscriptions/s/resourcegroups/rg/providers/x/federatedIdentityCredentials/prod-apps-api",
            "name": "prod-apps-api",
            "type": "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
            "systemData": {"createdAt": "2026-01-01T00:00:00Z"},
            "properties": {
                "issuer": "https://issuer.test/",
                "subject": "system:serviceaccount:apps:api",
                "audiences": ["api://AzureADTokenExchange"],
            },
        }));
        assert_eq!(desired.changes_from(&observed), Vec::<String>::new());
    }

    #[test]
    fn issuer_and_subject_compare_exactly_and_audiences_as_a_set() {
        let desired = FicSpec::desired(&intent());
        let mut observed = desired.clone();
        observed.issuer = "https://issuer.test".into();
        assert_eq!(desired.changes_from(&observed).len(), 1);
        let mut observed = desired.clone();
        observed.subject = "system:serviceaccount:apps:API".into();
        assert_eq!(
            desired.changes_from(&observed),
            vec!["subject system:serviceaccount:apps:API -> system:serviceaccount:apps:api"]
        );
        let mut observed = desired.clone();
        observed.audiences.insert("other".into());
        assert_eq!(desired.changes_from(&observed).len(), 1);
    }

    #[test]
    fn the_body_carries_exactly_one_audience() {
        assert_eq!(
            FicSpec::desired(&intent()).body(),
            json!({"properties": {
                "issuer": "https://issuer.test/",
                "subject": "system:serviceaccount:apps:api",
                "audiences": ["api://AzureADTokenExchange"],
            }})
        );
    }
}
