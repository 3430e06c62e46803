//! The controllers' pure cores: what each resource asks of the cloud (`desired`), computed from
//! plain data with no IO, so that `passport plan` and the reconcilers share one answer.

pub mod access_policy;
pub mod federated_trust;

use passport_crds::conditions::Reason;

/// Why Passport will not act on a resource: the condition reason and a message that names the
/// rule and what to change.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    #[serde(serialize_with = "reason_str")]
    pub reason: Reason,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

fn reason_str<S: serde::Serializer>(reason: &Reason, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(reason.as_str())
}
