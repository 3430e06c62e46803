//! A FederatedTrust's status from what its reconcile observed: `CloudSynced`, `IssuerReachable`,
//! `IssuerPublished` (with `spec.issuer.publish`) and `Ready` over them, and the outputs
//! (issuer, JWKS URL, provider ARN or name, what was published). Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use passport_crds::{
    FederatedTrust, FederatedTrustStatus,
    conditions::{self, ConditionType, Reason, State, Status},
    federated_trust::{
        AwsTrustStatus, AzureTrustStatus, GcpTrustStatus, JwksSource, PublicationStatus,
    },
};

use super::desired::TrustPlan;
use crate::{
    cloud::{OidcProviderState, WorkloadIdentityState},
    controllers::issuer::Reachability,
};

/// The cloud object as observed after the ensure.
#[derive(Clone, Debug)]
pub enum Object {
    Aws(OidcProviderState),
    Gcp(WorkloadIdentityState),
    None,
}

/// How the cloud side ended: synced (to the plan, with the cloud object observed), refused or
/// failed.
pub type Sync<'a> = crate::controllers::Sync<'a, (&'a TrustPlan, Object)>;

/// How the issuer's publication ended: the `IssuerPublished` condition, and what is published
/// (None when nothing could be read or written: the previous status then stays, so a retiring
/// key keeps its start).
#[derive(Clone, Debug)]
pub struct Published {
    pub state: State,
    pub status: Option<PublicationStatus>,
}

/// Whether the trust needs the cloud to fetch the issuer's keys itself (every cloud but GCP with
/// `jwks: FromCluster`); only then does an unreachable issuer keep it from Ready.
pub fn needs_public_issuer(trust: &FederatedTrust) -> bool {
    trust
        .spec
        .gcp
        .as_ref()
        .is_none_or(|gcp| gcp.jwks != JwksSource::FromCluster)
}

pub fn compute(
    trust: &FederatedTrust,
    sync: &Sync<'_>,
    reachability: Option<&Reachability>,
    published: Option<&Published>,
    now: Time,
) -> FederatedTrustStatus {
    let previous = trust.status.clone().unwrap_or_default();
    let synced = sync.condition("the cloud trusts the issuer");
    let reachable = reachability.map(|r| match r {
        Reachability::Reachable { .. } => State::new(
            ConditionType::IssuerReachable,
            Status::True,
            Reason::Reconciled,
            "the issuer's discovery document and JWKS are served over HTTPS with the cluster's keys",
        ),
        Reachability::Unreachable { reason, message } => State::new(
            ConditionType::IssuerReachable,
            Status::False,
            *reason,
            message.clone(),
        ),
    });
    let blocking = published
        .map(|p| &p.state)
        .filter(|p| p.status == Status::False)
        .or_else(|| {
            reachable
                .as_ref()
                .filter(|r| r.status == Status::False && needs_public_issuer(trust))
        });
    let ready = match (&synced.status, blocking) {
        (Status::True, None) => State::new(
            ConditionType::Ready,
            Status::True,
            Reason::Reconciled,
            "AccessPolicies can use this trust",
        ),
        (Status::True, Some(r)) => State::new(
            ConditionType::Ready,
            Status::False,
            r.reason,
            r.message.clone(),
        ),
        _ => State::new(
            ConditionType::Ready,
            Status::False,
            synced.reason,
            synced.message.clone(),
        ),
    };
    let mut states = vec![ready];
    states.extend(reachable);
    states.extend(published.map(|p| p.state.clone()));
    states.push(synced);
    let mut status = FederatedTrustStatus {
        conditions: conditions::to_conditions(
            &states,
            &previous.conditions,
            trust.metadata.generation,
            now,
        ),
        observed_generation: trust.metadata.generation,
        cloud: trust.spec.cloud().map(|c| c.as_str().to_owned()),
        account: account(trust),
        ..previous
    };
    if let Some(Reachability::Reachable { jwks_uri }) = reachability {
        status.jwks_uri = Some(jwks_uri.clone());
    }
    match published {
        Some(Published {
            status: Some(publication),
            ..
        }) => status.publication = Some(publication.clone()),
        Some(_) => {}
        None => status.publication = None,
    }
    if let Sync::Synced((plan, object)) = sync {
        status.issuer = Some(plan.issuer.clone());
        status.aws = None;
        status.gcp = None;
        status.azure = None;
        match object {
            Object::Aws(provider) => {
                status.aws = Some(AwsTrustStatus {
                    oidc_provider_arn: Some(provider.arn.clone()),
                    created: Some(provider.created),
                });
            }
            Object::Gcp(provider) => {
                status.gcp = Some(GcpTrustStatus {
                    provider_name: Some(provider.provider_name.clone()),
                    audience: Some(provider.audience.clone()),
                });
            }
            Object::None if trust.spec.azure.is_some() => {
                status.azure = Some(AzureTrustStatus {
                    issuer: Some(plan.issuer.clone()),
                });
            }
            Object::None => {}
        }
    }
    status
}

fn account(trust: &FederatedTrust) -> Option<String> {
    let spec = &trust.spec;
    spec.aws
        .as_ref()
        .map(|a| a.account_id.clone())
        .or_else(|| spec.gcp.as_ref().map(|g| g.project_id.clone()))
        .or_else(|| spec.azure.as_ref().map(|a| a.tenant_id.clone()))
}

/// Whether writing `next` would change anything a reader sees.
pub fn changed(previous: Option<&FederatedTrustStatus>, next: &FederatedTrustStatus) -> bool {
    let Some(previous) = previous else {
        return true;
    };
    let outputs = |s: &FederatedTrustStatus| {
        (
            s.observed_generation,
            s.cloud.clone(),
            s.account.clone(),
            s.issuer.clone(),
            s.jwks_uri.clone(),
            s.aws.clone(),
            s.gcp.clone(),
            s.azure.clone(),
            s.publication.clone(),
        )
    };
    !conditions::same(&previous.conditions, &next.conditions) || outputs(previous) != outputs(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::federated_trust::desired;

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).unwrap_or_default())
    }

    fn trust(yaml: &str) -> FederatedTrust {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn condition<'a>(status: &'a FederatedTrustStatus, type_: &str) -> (&'a str, &'a str) {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map_or(("absent", ""), |c| (c.status.as_str(), c.reason.as_str()))
    }

    const AWS: &str = "metadata: {name: aws, generation: 2}\nspec:\n  issuer: {url: 'https://oidc.example.com'}\n  aws: {accountId: '123456789012'}\n";

    fn plan_of(trust: &FederatedTrust) -> TrustPlan {
        desired::build(
            trust,
            &desired::Inputs {
                cluster: "prod",
                discovered_issuer: None,
                cluster_jwks: Some(r#"{"keys":[]}"#),
            },
        )
        .unwrap()
    }

    #[test]
    fn a_synced_reachable_trust_is_ready_and_shows_its_provider() {
        let t = trust(AWS);
        let plan = plan_of(&t);
        let provider = OidcProviderState {
            arn: "arn:aws:iam::123456789012:oidc-provider/oidc.example.com".to_owned(),
            created: true,
            client_ids: vec!["sts.amazonaws.com".to_owned()],
        };
        let reachable = Reachability::Reachable {
            jwks_uri: "https://oidc.example.com/keys".to_owned(),
        };
        let status = compute(
            &t,
            &Sync::Synced((&plan, Object::Aws(provider))),
            Some(&reachable),
            None,
            at(10),
        );
        assert_eq!(condition(&status, "Ready"), ("True", "Reconciled"));
        assert_eq!(condition(&status, "IssuerReachable").0, "True");
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(status.account.as_deref(), Some("123456789012"));
        assert_eq!(status.issuer.as_deref(), Some("https://oidc.example.com"));
        assert_eq!(
            status.jwks_uri.as_deref(),
            Some("https://oidc.example.com/keys")
        );
        let aws = status.aws.unwrap();
        assert_eq!(aws.created, Some(true));
        assert!(aws.oidc_provider_arn.unwrap().ends_with("oidc.example.com"));
    }

    #[test]
    fn an_unreachable_issuer_blocks_ready_unless_the_keys_are_uploaded() {
        let unreachable = Reachability::Unreachable {
            reason: Reason::IssuerNotPublic,
            message: "not https".to_owned(),
        };
        let t = trust(AWS);
        let plan = plan_of(&t);
        let provider = OidcProviderState {
            arn: "arn".to_owned(),
            created: false,
            client_ids: Vec::new(),
        };
        let status = compute(
            &t,
            &Sync::Synced((&plan, Object::Aws(provider))),
            Some(&unreachable),
            None,
            at(10),
        );
        assert_eq!(condition(&status, "CloudSynced").0, "True");
        assert_eq!(condition(&status, "Ready"), ("False", "IssuerNotPublic"));

        let gcp = trust(
            "metadata: {name: gcp}\nspec:\n  issuer: {url: 'http://private'}\n  gcp: {projectId: p, projectNumber: '1', poolId: pool, providerId: prov, jwks: FromCluster}\n",
        );
        let plan = plan_of(&gcp);
        let state = WorkloadIdentityState {
            provider_name: "projects/1/locations/global/workloadIdentityPools/pool/providers/prov"
                .to_owned(),
            audience: "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/prov".to_owned(),
        };
        let status = compute(
            &gcp,
            &Sync::Synced((&plan, Object::Gcp(state))),
            Some(&unreachable),
            None,
            at(10),
        );
        assert_eq!(condition(&status, "IssuerReachable").0, "False");
        assert_eq!(
            condition(&status, "Ready").0,
            "True",
            "Google has the keys inline"
        );
        assert!(status.gcp.unwrap().audience.unwrap().starts_with("//iam"));
    }

    #[test]
    fn a_failure_keeps_the_outputs_and_is_written_once() {
        let mut t = trust(AWS);
        let plan = plan_of(&t);
        let provider = OidcProviderState {
            arn: "arn:1".to_owned(),
            created: true,
            client_ids: Vec::new(),
        };
        let first = compute(
            &t,
            &Sync::Synced((&plan, Object::Aws(provider))),
            None,
            None,
            at(1),
        );
        t.status = Some(first.clone());
        let failed = Sync::Failed {
            reason: Reason::AccessDenied,
            message: "denied".to_owned(),
        };
        let second = compute(&t, &failed, None, None, at(2));
        assert!(changed(Some(&first), &second));
        assert_eq!(condition(&second, "Ready"), ("False", "AccessDenied"));
        assert_eq!(
            second.aws, first.aws,
            "the provider ARN stays for the cleanup"
        );
        t.status = Some(second.clone());
        assert!(!changed(
            Some(&second),
            &compute(&t, &failed, None, None, at(3))
        ));
    }

    #[test]
    fn a_failed_publication_blocks_ready_and_a_rotation_does_not() {
        let mut t = trust(AWS);
        let plan = plan_of(&t);
        let provider = OidcProviderState {
            arn: "arn:1".to_owned(),
            created: true,
            client_ids: Vec::new(),
        };
        let synced = Sync::Synced((&plan, Object::Aws(provider)));
        let publication = PublicationStatus {
            url: Some("https://oidc.example.com".to_owned()),
            keys: vec!["new".to_owned()],
            retiring_keys: vec![passport_crds::federated_trust::RetiringKey {
                kid: "old".to_owned(),
                since: "2026-12-01T10:00:00Z".to_owned(),
                until: "2026-12-01T11:15:00Z".to_owned(),
            }],
        };
        let rotating = Published {
            state: State::new(
                ConditionType::IssuerPublished,
                Status::True,
                Reason::RotationInProgress,
                "old until 11:15",
            ),
            status: Some(publication.clone()),
        };
        let first = compute(&t, &synced, None, Some(&rotating), at(1));
        assert_eq!(condition(&first, "Ready").0, "True");
        assert_eq!(
            condition(&first, "IssuerPublished"),
            ("True", "RotationInProgress")
        );
        assert_eq!(first.publication.as_ref(), Some(&publication));
        t.status = Some(first.clone());

        let failed = Published {
            state: State::new(
                ConditionType::IssuerPublished,
                Status::False,
                Reason::PublishFailed,
                "AccessDenied",
            ),
            status: None,
        };
        let second = compute(&t, &synced, None, Some(&failed), at(2));
        assert_eq!(condition(&second, "Ready"), ("False", "PublishFailed"));
        assert_eq!(
            second.publication, first.publication,
            "a failure keeps what was published, and when each key started to retire"
        );
        assert!(changed(Some(&first), &second));
        t.status = Some(second);
        // Without spec.issuer.publish there is no condition and no publication.
        let third = compute(&t, &synced, None, None, at(3));
        assert!(
            third
                .conditions
                .iter()
                .all(|c| c.type_ != "IssuerPublished")
        );
        assert_eq!(third.publication, None);
    }
}
