//! An AccessPolicy's status from what its reconcile observed: the conditions (`CloudSynced`,
//! `Verified` when asked, and `Ready` over them) and the cloud outputs the printer columns read.
//! Pure: the clock comes in as an argument, and `lastTransitionTime` moves only on a change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use passport_crds::{
    AccessPolicy, AccessPolicyStatus, FederatedTrust,
    access_policy::{AwsAccessStatus, AzureAccessStatus, GcpAccessStatus},
    conditions::{self, ConditionType, Reason, State, Status},
};

use super::desired::{PolicyObject, PolicyPlan};

/// How the cloud side of a reconcile ended: synced to the plan, refused or failed.
pub type Sync<'a> = crate::controllers::Sync<'a, &'a PolicyPlan>;

/// What a reconcile observed.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    pub sync: Sync<'a>,
    /// The result of the token exchange when the policy asks for verification.
    pub verification: Option<Result<(), String>>,
    /// The Azure identity's client ID in use, when known.
    pub azure_client_id: Option<String>,
}

/// The status the policy should have.
pub fn compute(policy: &AccessPolicy, observed: &Observed<'_>, now: Time) -> AccessPolicyStatus {
    let previous = policy.status.clone().unwrap_or_default();
    let synced = observed.sync.condition("the cloud matches the spec");
    let verified = observed.verification.as_ref().map(|result| match result {
        Ok(()) => State::new(
            ConditionType::Verified,
            Status::True,
            Reason::Reconciled,
            "a token exchange with a bound service account worked",
        ),
        Err(message) => State::new(
            ConditionType::Verified,
            Status::False,
            Reason::CloudRejected,
            message.clone(),
        ),
    });
    let ready = match (&synced.status, &verified) {
        (Status::True, None) => State::new(
            ConditionType::Ready,
            Status::True,
            Reason::Reconciled,
            "the cloud grants the listed service accounts",
        ),
        (Status::True, Some(v)) if v.status == Status::True => State::new(
            ConditionType::Ready,
            Status::True,
            Reason::Reconciled,
            "the cloud grants the listed service accounts, and a token exchange worked",
        ),
        (Status::True, Some(v)) => State::new(
            ConditionType::Ready,
            Status::False,
            v.reason,
            v.message.clone(),
        ),
        _ => State::new(
            ConditionType::Ready,
            Status::False,
            synced.reason,
            synced.message.clone(),
        ),
    };
    let mut states = vec![ready, synced];
    states.extend(verified);
    let mut status = AccessPolicyStatus {
        conditions: conditions::to_conditions(
            &states,
            &previous.conditions,
            policy.metadata.generation,
            now.clone(),
        ),
        observed_generation: policy.metadata.generation,
        cloud: policy.spec.cloud().map(|c| c.as_str().to_owned()),
        // Until the next successful sync, the outputs keep saying what Passport last wrote to
        // the cloud: a later sync or the cleanup removes exactly that.
        identity: previous.identity.clone(),
        bound_service_accounts: previous.bound_service_accounts.clone(),
        last_sync_time: previous.last_sync_time.clone(),
        aws: previous.aws.clone(),
        gcp: previous.gcp.clone(),
        azure: previous.azure.clone(),
        pods_without_credentials: previous.pods_without_credentials,
    };
    if let Sync::Synced(plan) = &observed.sync {
        status.identity = Some(plan.identity.clone());
        status.bound_service_accounts = policy.spec.service_accounts.clone();
        status.last_sync_time = Some(now);
        (status.aws, status.gcp, status.azure) = (None, None, None);
        match &plan.object {
            PolicyObject::AwsRole(_) | PolicyObject::AwsTrustStatement(_) => {
                status.aws = Some(AwsAccessStatus {
                    role_arn: Some(plan.identity.clone()),
                });
            }
            PolicyObject::GcpBinding(_) | PolicyObject::GcpDirect => {
                status.gcp = Some(GcpAccessStatus {
                    principals: plan.principals.clone(),
                });
            }
            PolicyObject::AzureCredentials { credentials } => {
                status.azure = Some(AzureAccessStatus {
                    federated_credentials: credentials.iter().map(|c| c.name.clone()).collect(),
                    client_id: observed.azure_client_id.clone(),
                });
            }
            PolicyObject::Oidc => {}
        }
    }
    status
}

/// Why the policy must wait before it writes to the cloud: its trust has not synced its own
/// cloud side at its current generation. A trust and its policies are often applied together,
/// and what a policy writes names the trust's objects: an AWS role trusts the trust's OIDC
/// provider (IAM refuses a principal that does not exist), a GCP binding its pool's principals.
/// None once the trust's `CloudSynced` is True for its spec.
pub fn trust_pending(trust: &FederatedTrust) -> Option<String> {
    let name = trust.metadata.name.as_deref().unwrap_or_default();
    let status = trust.status.as_ref();
    let conditions = status.map_or(&[][..], |s| s.conditions.as_slice());
    let observed = status.and_then(|s| s.observed_generation);
    let generation = trust.metadata.generation;
    if crate::controllers::synced_at(conditions, observed, generation) {
        return None;
    }
    let synced = conditions
        .iter()
        .find(|c| c.type_ == "CloudSynced" && c.status == "False")
        .filter(|_| observed == generation);
    Some(match synced {
        Some(c) => format!(
            "waiting for FederatedTrust {name}, whose cloud side is not in place: {}",
            c.message
        ),
        None => format!(
            "waiting for FederatedTrust {name} to set up its cloud side (its CloudSynced \
             condition) before writing what trusts it"
        ),
    })
}

/// The trust's own failure, when it is not Ready: a policy of a trust that cannot work (an
/// issuer the clouds cannot reach, say) is not Ready either, whatever its cloud objects.
pub fn trust_blocking(trust: &FederatedTrust) -> Option<(Reason, String)> {
    let status = trust.status.as_ref()?;
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
    if ready.status != "False" || status.observed_generation != trust.metadata.generation {
        return None;
    }
    let reason = Reason::parse(&ready.reason).unwrap_or(Reason::Progressing);
    Some((
        reason,
        format!(
            "FederatedTrust {} is not Ready: {}",
            trust.metadata.name.as_deref().unwrap_or_default(),
            ready.message
        ),
    ))
}

/// Sets `Ready` False with the trust's reason when the policy would otherwise be Ready.
pub fn block_ready(
    status: &mut AccessPolicyStatus,
    policy: &AccessPolicy,
    (reason, message): (Reason, String),
    now: Time,
) {
    let Some(index) = status
        .conditions
        .iter()
        .position(|c| c.type_ == "Ready" && c.status == "True")
    else {
        return;
    };
    let previous = policy
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let blocked = conditions::to_conditions(
        &[State::new(
            ConditionType::Ready,
            Status::False,
            reason,
            message,
        )],
        &previous,
        policy.metadata.generation,
        now,
    );
    if let Some(condition) = blocked.into_iter().next() {
        status.conditions[index] = condition;
    }
}

/// The status of a policy whose cleanup failed: its outputs stay (they say what is left to
/// remove), and `Ready` and `CloudSynced` say why the deletion waits.
pub fn deleting(
    policy: &AccessPolicy,
    reason: Reason,
    message: &str,
    now: Time,
) -> AccessPolicyStatus {
    let previous = policy.status.clone().unwrap_or_default();
    let message = format!("cleaning up the cloud objects failed, the deletion waits: {message}");
    let states = [
        State::new(
            ConditionType::Ready,
            Status::False,
            Reason::Deleting,
            message.clone(),
        ),
        State::new(ConditionType::CloudSynced, Status::False, reason, message),
    ];
    AccessPolicyStatus {
        conditions: conditions::to_conditions(
            &states,
            &previous.conditions,
            policy.metadata.generation,
            now,
        ),
        ..previous
    }
}

/// Whether writing `next` would change anything a reader sees (status is written only then).
pub fn changed(previous: Option<&AccessPolicyStatus>, next: &AccessPolicyStatus) -> bool {
    let Some(previous) = previous else {
        return true;
    };
    let outputs = |s: &AccessPolicyStatus| {
        (
            s.observed_generation,
            s.cloud.clone(),
            s.identity.clone(),
            s.bound_service_accounts.clone(),
            s.aws.clone(),
            s.gcp.clone(),
            s.azure.clone(),
            s.pods_without_credentials,
        )
    };
    !conditions::same(&previous.conditions, &next.conditions) || outputs(previous) != outputs(next)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::controllers::Refusal;
    use crate::controllers::access_policy::desired;

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).unwrap_or_default())
    }

    fn policy() -> AccessPolicy {
        serde_yaml::from_str(
            "metadata: {name: api, namespace: payments, generation: 3}\nspec:\n  trustRef: {name: aws-prod}\n  serviceAccounts: [api]\n  aws: {roleName: payments-api}\n",
        )
        .unwrap()
    }

    fn plan() -> PolicyPlan {
        let trust: passport_crds::FederatedTrust = serde_yaml::from_str(
            "metadata: {name: aws-prod}\nspec:\n  issuer: {url: https://oidc.example.com}\n  aws: {accountId: '123456789012'}\n  namespaceSelector: {}\n",
        )
        .unwrap();
        desired::build(
            &policy(),
            &desired::Inputs {
                cluster: "prod",
                trust: Some(&trust),
                namespace_labels: &BTreeMap::new(),
                discovered_issuer: None,
                trust_policy_quota: 2048,
            },
        )
        .unwrap()
    }

    fn condition<'a>(status: &'a AccessPolicyStatus, type_: &str) -> &'a str {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map_or("absent", |c| c.status.as_str())
    }

    #[test]
    fn a_synced_policy_is_ready_and_shows_its_role() {
        let plan = plan();
        let observed = Observed {
            sync: Sync::Synced(&plan),
            verification: None,
            azure_client_id: None,
        };
        let status = compute(&policy(), &observed, at(100));
        assert_eq!(condition(&status, "Ready"), "True");
        assert_eq!(condition(&status, "CloudSynced"), "True");
        assert_eq!(condition(&status, "Verified"), "absent");
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.cloud.as_deref(), Some("aws"));
        let arn = "arn:aws:iam::123456789012:role/passport/payments-api";
        assert_eq!(status.identity.as_deref(), Some(arn));
        assert_eq!(status.aws.unwrap().role_arn.as_deref(), Some(arn));
        assert_eq!(status.bound_service_accounts, ["api"]);
    }

    #[test]
    fn a_refusal_names_its_reason_on_ready_and_cloud_synced() {
        let refusal = Refusal::new(Reason::NamespaceNotAllowed, "not admitted");
        let observed = Observed {
            sync: Sync::Refused(&refusal),
            verification: None,
            azure_client_id: None,
        };
        let status = compute(&policy(), &observed, at(100));
        let ready = &status.conditions[0];
        assert_eq!(
            (ready.type_.as_str(), ready.status.as_str()),
            ("Ready", "False")
        );
        assert_eq!(ready.reason, "NamespaceNotAllowed");
        assert_eq!(status.identity, None);
    }

    #[test]
    fn a_failed_verification_keeps_the_policy_from_ready() {
        let plan = plan();
        let observed = Observed {
            sync: Sync::Synced(&plan),
            verification: Some(Err("AccessDenied: not authorized".to_owned())),
            azure_client_id: None,
        };
        let status = compute(&policy(), &observed, at(100));
        assert_eq!(condition(&status, "CloudSynced"), "True");
        assert_eq!(condition(&status, "Verified"), "False");
        assert_eq!(condition(&status, "Ready"), "False");
    }

    #[test]
    fn a_trust_that_is_not_ready_keeps_its_policies_from_ready() {
        let plan = plan();
        let observed = Observed {
            sync: Sync::Synced(&plan),
            verification: None,
            azure_client_id: None,
        };
        let mut status = compute(&policy(), &observed, at(100));
        let mut trust: FederatedTrust = serde_yaml::from_str(
            "metadata: {name: aws-prod, generation: 1}\nspec:\n  aws: {accountId: '123456789012'}\n",
        )
        .unwrap();
        assert_eq!(trust_blocking(&trust), None, "no status yet");
        trust.status = Some(passport_crds::FederatedTrustStatus {
            observed_generation: Some(1),
            conditions: conditions::to_conditions(
                &[State::new(
                    ConditionType::Ready,
                    Status::False,
                    Reason::IssuerUnreachable,
                    "fetching https://oidc.example.com failed",
                )],
                &[],
                Some(1),
                at(50),
            ),
            ..Default::default()
        });
        let blocking = trust_blocking(&trust).unwrap();
        block_ready(&mut status, &policy(), blocking, at(100));
        let ready = &status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "IssuerUnreachable")
        );
        assert!(
            ready
                .message
                .starts_with("FederatedTrust aws-prod is not Ready: fetching"),
            "{}",
            ready.message
        );
        assert_eq!(
            condition(&status, "CloudSynced"),
            "True",
            "the cloud side still matches"
        );
    }

    /// A policy waits for a trust that has not synced its cloud side for its spec: with no
    /// status yet, with CloudSynced False (its message passed on), or synced for an older
    /// generation; once CloudSynced is True for its generation, it goes ahead, Ready or not.
    #[test]
    fn a_policy_waits_for_its_trusts_cloud_side() {
        let mut trust: FederatedTrust = serde_yaml::from_str(
            "metadata: {name: aws-prod, generation: 2}\nspec:\n  aws: {accountId: '123456789012'}\n",
        )
        .unwrap();
        let waiting = trust_pending(&trust).expect("no status yet");
        assert!(waiting.contains("FederatedTrust aws-prod"), "{waiting}");
        let with = |generation: i64, synced: Status, message: &str| {
            Some(passport_crds::FederatedTrustStatus {
                observed_generation: Some(generation),
                conditions: conditions::to_conditions(
                    &[
                        State::new(
                            ConditionType::Ready,
                            Status::False,
                            Reason::IssuerUnreachable,
                            "the issuer is not public",
                        ),
                        State::new(
                            ConditionType::CloudSynced,
                            synced,
                            Reason::CloudUnavailable,
                            message,
                        ),
                    ],
                    &[],
                    Some(generation),
                    at(50),
                ),
                ..Default::default()
            })
        };
        trust.status = with(
            2,
            Status::False,
            "aws CreateOpenIDConnectProvider: throttled",
        );
        let waiting = trust_pending(&trust).expect("CloudSynced is False");
        assert!(
            waiting.ends_with("not in place: aws CreateOpenIDConnectProvider: throttled"),
            "{waiting}"
        );
        trust.status = with(1, Status::True, "the cloud trusts the issuer");
        assert!(
            trust_pending(&trust).is_some(),
            "synced for generation 1 of 2"
        );
        trust.status = with(2, Status::True, "the cloud trusts the issuer");
        assert_eq!(trust_pending(&trust), None, "synced, though not Ready");

        let observed = Observed {
            sync: Sync::Waiting("waiting for FederatedTrust aws-prod".to_owned()),
            verification: None,
            azure_client_id: None,
        };
        let status = compute(&policy(), &observed, at(100));
        for type_ in ["Ready", "CloudSynced"] {
            let c = status.conditions.iter().find(|c| c.type_ == type_).unwrap();
            assert_eq!(
                (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
                (
                    "False",
                    "Progressing",
                    "waiting for FederatedTrust aws-prod"
                )
            );
        }
        assert_eq!(status.identity, None, "nothing written, nothing shown");
    }

    #[test]
    fn an_unchanged_outcome_is_not_written_again() {
        let plan = plan();
        let observed = Observed {
            sync: Sync::Synced(&plan),
            verification: None,
            azure_client_id: None,
        };
        let mut p = policy();
        let first = compute(&p, &observed, at(100));
        assert!(changed(None, &first));
        p.status = Some(first.clone());
        let second = compute(&p, &observed, at(200));
        assert!(!changed(Some(&first), &second), "only the sync time moved");
        assert_eq!(second.conditions[0].last_transition_time, at(100));
        let failed = Observed {
            sync: Sync::Failed {
                reason: Reason::Throttled,
                message: "slow down".to_owned(),
            },
            ..observed
        };
        let third = compute(&p, &failed, at(300));
        assert!(changed(Some(&first), &third));
        assert_eq!(third.conditions[0].last_transition_time, at(300));
    }
}
