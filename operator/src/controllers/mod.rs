//! The controllers. Each kind has a pure core (`desired`: what the resource asks of the cloud,
//! computed from plain data with no IO, so that `passport plan` and the reconcilers share one
//! answer; `status`), its cloud side and its reconciler.

pub mod access_policy;
pub mod context;
pub mod federated_trust;
pub mod issuer;
pub mod verify;

/// How long a reconcile waits before the next one.
pub mod requeue {
    use std::time::Duration;

    /// After a Kubernetes API error.
    pub const KUBE_ERROR: Duration = Duration::from_secs(5);
    /// After a failed verification: credentials may still be propagating.
    pub const VERIFY_RETRY: Duration = Duration::from_secs(30);
    /// While the issuer cannot be read or reached.
    pub const ISSUER_RETRY: Duration = Duration::from_secs(60);
    /// While a policy waits for its trust's cloud side: a backstop, since the trust's status
    /// change (watched) brings the next reconcile.
    pub const TRUST_PENDING: Duration = Duration::from_secs(10);

    /// `base` plus up to 20% jitter, so that many resources never retry in step.
    pub fn jittered(base: Duration) -> Duration {
        let spread = base.as_millis() as u64 / 5;
        base + Duration::from_millis(fastrand::u64(0..=spread))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn jitter_stays_within_a_fifth() {
            for _ in 0..100 {
                let d = jittered(Duration::from_secs(10));
                assert!(
                    d >= Duration::from_secs(10) && d <= Duration::from_secs(12),
                    "{d:?}"
                );
            }
        }
    }
}

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use passport_crds::conditions::{self, Reason};

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

/// How the cloud side of a reconcile ended. `T` is what a success observed: the plan, and for
/// a trust the cloud object too.
#[derive(Clone, Debug)]
pub enum Sync<'a, T> {
    /// The cloud matches the plan.
    Synced(T),
    /// Passport refused to write (a guardrail).
    Refused(&'a Refusal),
    /// The cloud call failed; the reason and message come from the error.
    Failed { reason: Reason, message: String },
    /// Nothing was written yet: what it needs is not there yet (the message says what).
    Waiting(String),
}

impl<T> Sync<'_, T> {
    /// A failed cloud call, as the `CloudSynced` condition reports it.
    pub fn failed(error: &crate::cloud::CloudError) -> Self {
        Self::Failed {
            reason: error.reason(),
            message: error.to_string(),
        }
    }

    /// The `CloudSynced` condition; `synced` is its message when the cloud matches.
    pub fn condition(&self, synced: &str) -> conditions::State {
        use conditions::{ConditionType, State, Status};
        match self {
            Self::Synced(_) => State::new(
                ConditionType::CloudSynced,
                Status::True,
                Reason::Reconciled,
                synced,
            ),
            Self::Refused(refusal) => State::new(
                ConditionType::CloudSynced,
                Status::False,
                refusal.reason,
                refusal.message.clone(),
            ),
            Self::Failed { reason, message } => State::new(
                ConditionType::CloudSynced,
                Status::False,
                *reason,
                message.clone(),
            ),
            Self::Waiting(message) => State::new(
                ConditionType::CloudSynced,
                Status::False,
                Reason::Progressing,
                message.clone(),
            ),
        }
    }
}

/// The reconcile clock.
pub(crate) fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// Whether the last status said the cloud matched this generation; a cloud change found now is
/// drift.
pub(crate) fn synced_at(
    conditions: &[Condition],
    observed: Option<i64>,
    generation: Option<i64>,
) -> bool {
    observed == generation
        && conditions
            .iter()
            .any(|c| c.type_ == "CloudSynced" && c.status == "True")
}

/// The field manager of every status Passport writes.
pub(crate) const STATUS_MANAGER: &str = "passport";

/// Writes `status` with a server-side apply of the status subresource, as the one owner of
/// the fields it sets: a field Passport set before and leaves out now (an output that became
/// None, such as `status.publication` once `publish` is removed) is removed, which a merge
/// patch would keep. False when the object is gone meanwhile (nothing to report on).
pub(crate) async fn patch_status<K>(
    api: &Api<K>,
    name: &str,
    status: &impl serde::Serialize,
) -> Result<bool, context::Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    match api
        .patch_status(
            name,
            &PatchParams::apply(STATUS_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error.into()),
    }
}
