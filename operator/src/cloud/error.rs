//! `CloudError`: every SDK or REST failure of every provider, mapped to one kind with a bounded
//! reason and a retry class, so that controllers never look at SDK types.

use std::time::Duration;

use passport_crds::conditions::Reason;

use passport_crds::Cloud;

/// What went wrong, in the words the controllers act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The object does not exist.
    NotFound,
    /// The cloud refused Passport's credentials or permissions.
    AccessDenied,
    /// The cloud throttled Passport, and the retry budget ran out.
    Throttled,
    /// Another writer holds or changed the object, or it belongs to someone else.
    Conflict,
    /// The cloud failed (5xx) or could not be reached, and the retry budget ran out.
    Unavailable,
    /// The cloud refused the request as malformed, or Passport refused to send it.
    Invalid,
    /// A quota or size limit of the cloud (trust policy size, credentials per identity).
    LimitExceeded,
}

/// How the caller should retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryClass {
    /// Passing trouble: back off with jitter and try again soon.
    Transient,
    /// Someone must change the spec or the cloud: report it and requeue slowly.
    UserFixable,
}

/// One failed cloud operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{cloud} {operation}: {message}")]
pub struct CloudError {
    pub kind: ErrorKind,
    pub cloud: Cloud,
    /// The operation that failed, e.g. `CreateRole` (bounded: a metric label).
    pub operation: &'static str,
    /// What the cloud said, or what Passport refused, in words a user can act on. Never holds
    /// a token or secret.
    pub message: String,
    /// The cloud's own error code, when it gave one (`NoSuchEntity`, `PERMISSION_DENIED`).
    pub code: Option<String>,
}

impl CloudError {
    pub fn new(
        kind: ErrorKind,
        cloud: Cloud,
        operation: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            cloud,
            operation,
            message: message.into(),
            code: None,
        }
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// The Condition, Event and metric reason: a bounded set.
    pub fn reason(&self) -> Reason {
        match self.kind {
            ErrorKind::NotFound | ErrorKind::Invalid => Reason::CloudRejected,
            ErrorKind::AccessDenied => Reason::AccessDenied,
            ErrorKind::Throttled => Reason::Throttled,
            ErrorKind::Conflict if self.code.as_deref() == Some(NOT_OWNED) => Reason::NotOwned,
            ErrorKind::Conflict => Reason::Conflict,
            ErrorKind::Unavailable => Reason::CloudUnavailable,
            ErrorKind::LimitExceeded => match self.code.as_deref() {
                Some(TRUST_POLICY_TOO_LARGE) => Reason::TrustPolicyTooLarge,
                Some(FEDERATED_CREDENTIAL_LIMIT) => Reason::FederatedCredentialLimit,
                _ => Reason::CloudRejected,
            },
        }
    }

    /// Whether to retry soon or wait for a person.
    pub fn retry(&self) -> RetryClass {
        match self.kind {
            ErrorKind::Throttled | ErrorKind::Unavailable => RetryClass::Transient,
            // A conflict with another writer passes; one with another owner, or with an object
            // that holds ours (an instance profile holding a role), waits for a person.
            ErrorKind::Conflict if !matches!(self.code.as_deref(), Some(NOT_OWNED | BLOCKED)) => {
                RetryClass::Transient
            }
            _ => RetryClass::UserFixable,
        }
    }

    /// How long a controller should wait before reconciling again after this error.
    pub fn requeue_after(&self) -> Duration {
        match self.retry() {
            RetryClass::Transient => Duration::from_secs(15),
            RetryClass::UserFixable => Duration::from_secs(300),
        }
    }

    /// A Conflict with an object that belongs to someone else; `owner` names them.
    pub fn not_owned(cloud: Cloud, operation: &'static str, object: &str, owner: &str) -> Self {
        Self::new(
            ErrorKind::Conflict,
            cloud,
            operation,
            format!(
                "{object} already exists and belongs to {owner}; Passport never modifies an \
                 object it does not own: choose another name, or adopt it explicitly"
            ),
        )
        .with_code(NOT_OWNED)
    }
}

/// `code` of a Conflict with an object Passport does not own.
pub const NOT_OWNED: &str = "PassportNotOwned";
/// `code` of a Conflict that only a person can resolve (the object is held by another one).
pub const BLOCKED: &str = "PassportBlocked";
/// `code` of a LimitExceeded for an AWS trust policy over the account's quota.
pub const TRUST_POLICY_TOO_LARGE: &str = "PassportTrustPolicyTooLarge";
/// `code` of a LimitExceeded for the 21st federated credential on an Azure identity.
pub const FEDERATED_CREDENTIAL_LIMIT: &str = "PassportFederatedCredentialLimit";

/// The kind a plain HTTP status maps to, for the REST providers (GCP, Azure).
pub fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        400 | 422 => ErrorKind::Invalid,
        401 | 403 => ErrorKind::AccessDenied,
        404 | 410 => ErrorKind::NotFound,
        409 | 412 => ErrorKind::Conflict,
        429 => ErrorKind::Throttled,
        _ => ErrorKind::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(kind: ErrorKind) -> CloudError {
        CloudError::new(kind, Cloud::Aws, "GetRole", "boom")
    }

    #[test]
    fn throttling_and_outages_are_transient_and_the_rest_waits_for_a_person() {
        assert_eq!(error(ErrorKind::Throttled).retry(), RetryClass::Transient);
        assert_eq!(error(ErrorKind::Unavailable).retry(), RetryClass::Transient);
        assert_eq!(error(ErrorKind::Conflict).retry(), RetryClass::Transient);
        assert_eq!(
            error(ErrorKind::AccessDenied).retry(),
            RetryClass::UserFixable
        );
        assert_eq!(error(ErrorKind::Invalid).retry(), RetryClass::UserFixable);
        let foreign = CloudError::not_owned(Cloud::Aws, "CreateRole", "role x", "cluster b");
        assert_eq!(foreign.retry(), RetryClass::UserFixable);
        let held = error(ErrorKind::Conflict).with_code(BLOCKED);
        assert_eq!(held.retry(), RetryClass::UserFixable);
        assert_eq!(foreign.reason(), Reason::NotOwned);
        assert!(foreign.to_string().contains("belongs to cluster b"));
    }

    #[test]
    fn limits_carry_their_own_reasons() {
        let size = error(ErrorKind::LimitExceeded).with_code(TRUST_POLICY_TOO_LARGE);
        assert_eq!(size.reason(), Reason::TrustPolicyTooLarge);
        let fics = error(ErrorKind::LimitExceeded).with_code(FEDERATED_CREDENTIAL_LIMIT);
        assert_eq!(fics.reason(), Reason::FederatedCredentialLimit);
    }

    #[test]
    fn http_statuses_map_to_kinds() {
        assert_eq!(kind_for_status(403), ErrorKind::AccessDenied);
        assert_eq!(kind_for_status(404), ErrorKind::NotFound);
        assert_eq!(kind_for_status(409), ErrorKind::Conflict);
        assert_eq!(kind_for_status(429), ErrorKind::Throttled);
        assert_eq!(kind_for_status(503), ErrorKind::Unavailable);
    }
}
