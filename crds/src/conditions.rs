//! Typed condition types and reasons, and their conversion to `meta/v1` Conditions in the shape
//! kstatus, Flux and Argo CD read: a `Ready` condition plus `observedGeneration`, with
//! `lastTransitionTime` moving only when a condition's status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The condition types Passport sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionType {
    /// The resource does what it declares (summary of the others).
    Ready,
    /// The cloud can fetch the issuer's discovery document and JWKS (FederatedTrust).
    IssuerReachable,
    /// The cloud objects match the spec.
    CloudSynced,
    /// A real token exchange for one bound service account worked (AccessPolicy, when
    /// `spec.verify` or `--verify-all` asks for it).
    Verified,
    /// The issuer's discovery document and JWKS are published where `spec.issuer.publish`
    /// says, and match the cluster's keys (FederatedTrust).
    IssuerPublished,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::IssuerReachable => "IssuerReachable",
            Self::CloudSynced => "CloudSynced",
            Self::Verified => "Verified",
            Self::IssuerPublished => "IssuerPublished",
        }
    }
}

/// Why a condition has its status. A bounded set: also the Event reason and a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Everything matches the spec.
    Reconciled,
    /// Work is under way: a policy waits for its trust's cloud side.
    Progressing,
    /// The resource is being deleted and its cloud objects cleaned up.
    Deleting,
    /// The issuer's discovery document or JWKS could not be fetched.
    IssuerUnreachable,
    /// The issuer is not a public HTTPS URL, which this cloud requires.
    IssuerNotPublic,
    /// The referenced FederatedTrust does not exist.
    TrustNotFound,
    /// The trust's namespaceSelector does not admit this namespace.
    NamespaceNotAllowed,
    /// The policy's cloud block does not match the trust's cloud.
    CloudMismatch,
    /// The identity (role, service account, managed identity) is outside the trust's allow-list.
    IdentityNotAllowed,
    /// The policy's conditions are malformed (time zone, schedule).
    InvalidConditions,
    /// The AWS role trust policy would exceed the account's size quota.
    TrustPolicyTooLarge,
    /// The Azure identity already has 20 federated identity credentials.
    FederatedCredentialLimit,
    /// The GCP `google.subject` would exceed 127 characters.
    SubjectTooLong,
    /// The cloud refused Passport's credentials.
    AccessDenied,
    /// The cloud throttled Passport; it retries with backoff.
    Throttled,
    /// The cloud failed or was unreachable; it retries with backoff.
    CloudUnavailable,
    /// Another writer changed the cloud object; it retries.
    Conflict,
    /// The cloud object exists but is owned by someone else; Passport will not take it over.
    NotOwned,
    /// The cloud refused the request as invalid.
    CloudRejected,
    /// The issuer's documents are published and hold exactly the cluster's keys.
    Published,
    /// The published JWKS holds the cluster's keys and, until tokens signed with them expire,
    /// keys the cluster has dropped.
    RotationInProgress,
    /// Writing the issuer's documents to the bucket failed.
    PublishFailed,
    /// The documents would be served at a URL other than the cluster's issuer.
    IssuerMismatch,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Self; 23] = [
        Self::Reconciled,
        Self::Progressing,
        Self::Deleting,
        Self::IssuerUnreachable,
        Self::IssuerNotPublic,
        Self::TrustNotFound,
        Self::NamespaceNotAllowed,
        Self::CloudMismatch,
        Self::IdentityNotAllowed,
        Self::InvalidConditions,
        Self::TrustPolicyTooLarge,
        Self::FederatedCredentialLimit,
        Self::SubjectTooLong,
        Self::AccessDenied,
        Self::Throttled,
        Self::CloudUnavailable,
        Self::Conflict,
        Self::NotOwned,
        Self::CloudRejected,
        Self::Published,
        Self::RotationInProgress,
        Self::PublishFailed,
        Self::IssuerMismatch,
    ];

    /// The reason a condition names, when it is one of Passport's.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reconciled => "Reconciled",
            Self::Progressing => "Progressing",
            Self::Deleting => "Deleting",
            Self::IssuerUnreachable => "IssuerUnreachable",
            Self::IssuerNotPublic => "IssuerNotPublic",
            Self::TrustNotFound => "TrustNotFound",
            Self::NamespaceNotAllowed => "NamespaceNotAllowed",
            Self::CloudMismatch => "CloudMismatch",
            Self::IdentityNotAllowed => "IdentityNotAllowed",
            Self::InvalidConditions => "InvalidConditions",
            Self::TrustPolicyTooLarge => "TrustPolicyTooLarge",
            Self::FederatedCredentialLimit => "FederatedCredentialLimit",
            Self::SubjectTooLong => "SubjectTooLong",
            Self::AccessDenied => "AccessDenied",
            Self::Throttled => "Throttled",
            Self::CloudUnavailable => "CloudUnavailable",
            Self::Conflict => "Conflict",
            Self::NotOwned => "NotOwned",
            Self::CloudRejected => "CloudRejected",
            Self::Published => "Published",
            Self::RotationInProgress => "RotationInProgress",
            Self::PublishFailed => "PublishFailed",
            Self::IssuerMismatch => "IssuerMismatch",
        }
    }
}

/// Tri-state condition status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

/// A condition as computed by a controller, before it meets the clock and the previous status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub type_: ConditionType,
    pub status: Status,
    pub reason: Reason,
    pub message: String,
}

impl State {
    pub fn new(
        type_: ConditionType,
        status: Status,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Turns computed states into `meta/v1` Conditions. A condition whose status is unchanged keeps
/// its `lastTransitionTime` from `previous`; conditions not in `states` are dropped.
pub fn to_conditions(
    states: &[State],
    previous: &[Condition],
    observed_generation: Option<i64>,
    now: Time,
) -> Vec<Condition> {
    states
        .iter()
        .map(|state| {
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == state.type_.as_str() && c.status == state.status.as_str())
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: state.type_.as_str().to_owned(),
                status: state.status.as_str().to_owned(),
                reason: state.reason.as_str().to_owned(),
                message: state.message.clone(),
                observed_generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Whether two condition lists say the same thing, ignoring `lastTransitionTime`: a controller
/// patches status only when this is false, so a steady state makes no writes.
pub fn same(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.type_ == y.type_
                && x.status == y.status
                && x.reason == y.reason
                && x.message == y.message
                && x.observed_generation == y.observed_generation
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).expect("valid timestamp"))
    }

    fn ready(status: Status, reason: Reason) -> State {
        State::new(ConditionType::Ready, status, reason, "m")
    }

    #[test]
    fn every_reason_parses_back_from_its_name() {
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(Reason::parse("Nonsense"), None);
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let first = to_conditions(
            &[ready(Status::False, Reason::Progressing)],
            &[],
            Some(1),
            at(100),
        );
        assert_eq!(first[0].last_transition_time, at(100));
        assert_eq!(first[0].status, "False");
        assert_eq!(first[0].observed_generation, Some(1));

        // Same status, new reason and generation: the transition time stays.
        let second = to_conditions(
            &[ready(Status::False, Reason::Throttled)],
            &first,
            Some(2),
            at(200),
        );
        assert_eq!(second[0].last_transition_time, at(100));
        assert_eq!(second[0].reason, "Throttled");

        let third = to_conditions(
            &[ready(Status::True, Reason::Reconciled)],
            &second,
            Some(2),
            at(300),
        );
        assert_eq!(third[0].last_transition_time, at(300));
    }

    #[test]
    fn sameness_ignores_only_the_transition_time() {
        let a = to_conditions(
            &[ready(Status::True, Reason::Reconciled)],
            &[],
            Some(1),
            at(1),
        );
        let b = to_conditions(
            &[ready(Status::True, Reason::Reconciled)],
            &[],
            Some(1),
            at(2),
        );
        assert!(same(&a, &b));
        let c = to_conditions(
            &[ready(Status::True, Reason::Reconciled)],
            &[],
            Some(2),
            at(1),
        );
        assert!(!same(&a, &c));
    }
}
