//! The FederatedTrust reconciler: discovers the issuer when the spec names none, ensures the
//! cloud trust (AWS OIDC provider, GCP pool and provider with the cluster's JWKS when asked),
//! checks the issuer as a cloud would see it, and honours `deletionPolicy`.

use std::{sync::Arc, time::Instant};

use kube::{
    Api, Resource as _, ResourceExt as _,
    api::ListParams,
    runtime::{
        controller::Action,
        events::EventType,
        finalizer::{Event as Finalizer, finalizer},
    },
};
use passport_crds::{
    Cloud, FederatedTrust, FederatedTrustStatus, federated_trust::DeletionPolicy, keys::FINALIZER,
};

use super::{
    desired::{self, Inputs, TrustObject},
    status::{self, Object, Sync},
};
use crate::{
    audit::{self, Record, Who},
    cloud::{CloudError, Deleted, OidcProviderRelease, Owner, WorkloadIdentityRef},
    controllers::{
        context::{Context, Error, Inputs as SyncInputs},
        issuer, now, patch_status, requeue, synced_at,
    },
};

pub const KIND: &str = "FederatedTrust";

pub async fn reconcile(trust: Arc<FederatedTrust>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let api: Api<FederatedTrust> = Api::all(ctx.client.clone());
    let deleting = trust.metadata.deletion_timestamp.is_some();
    let result = finalizer(&api, FINALIZER, trust, |event| async {
        match event {
            Finalizer::Apply(trust) => apply(&trust, &ctx).await,
            Finalizer::Cleanup(trust) => cleanup(&trust, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    let outcome = match (&result, deleting) {
        (Err(error), _) => {
            ctx.metrics.error(KIND, error.reason());
            "error"
        }
        (Ok(_), true) => "deleted",
        (Ok(_), false) => "applied",
    };
    ctx.metrics.reconciled(KIND, outcome, started.elapsed());
    result
}

pub fn error_policy(trust: Arc<FederatedTrust>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(trust = %trust.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(requeue::jittered(error.requeue_after()))
}

async fn apply(trust: &FederatedTrust, ctx: &Context) -> Result<Action, Error> {
    let name = trust.name_any();
    let reference = trust.object_ref(&());
    let discovered = ctx.issuer.get().await;
    if let Err(message) = &discovered {
        tracing::warn!(trust = %name, %message, "could not read the issuer from the API server");
    }
    let discovered = discovered.ok();
    let key = format!("{KIND}/{name}");
    let inputs = SyncInputs {
        generation: trust.metadata.generation,
        digest: crate::audit::digest(&discovered.as_ref().map(|d| (&d.issuer, &d.jwks))),
    };
    // The memo decides, not the cached status: the cache may not have seen our own status
    // write yet when a watch event (our namespace label, say) brings the next reconcile.
    if let Some(elapsed) = ctx.synced.fresh(&key, &inputs, ctx.settings.resync) {
        // Neither the spec nor the cluster's keys changed since the last full sync.
        return Ok(Action::requeue(requeue::jittered(
            ctx.settings.resync.saturating_sub(elapsed),
        )));
    }
    let plan = desired::build(
        trust,
        &Inputs {
            cluster: &ctx.settings.cluster,
            discovered_issuer: discovered.as_ref().map(|d| d.issuer.as_str()),
            cluster_jwks: discovered.as_ref().map(|d| d.jwks.as_str()),
        },
    );
    let plan = match plan {
        Ok(plan) => plan,
        Err(refusal) => {
            ctx.metrics.error(KIND, refusal.reason.as_str());
            let next = status::compute(trust, &Sync::Refused(&refusal), None, now());
            if write_status(ctx, trust, &next).await? {
                ctx.event(
                    &reference,
                    EventType::Warning,
                    refusal.reason.as_str(),
                    "Refuse",
                    refusal.message.clone(),
                )
                .await;
            }
            return Ok(Action::requeue(requeue::jittered(requeue::ISSUER_RETRY)));
        }
    };
    let drift = trust.status.as_ref().is_some_and(|s| {
        synced_at(
            &s.conditions,
            s.observed_generation,
            trust.metadata.generation,
        )
    });
    let who = Who {
        kind: KIND,
        resource: &name,
        trust: &name,
        drift,
    };
    let ensured = ensure(&plan.object, ctx).await;
    let (sync, failure) = match ensured {
        Ok((object, record)) => {
            if let Some(record) = record {
                audit::emit(&who, &record);
                let reason = if drift {
                    "DriftRepaired"
                } else {
                    "CloudUpdated"
                };
                ctx.event(&reference, EventType::Normal, reason, "Sync", record.note())
                    .await;
            }
            (Sync::Synced(&plan, object), None)
        }
        Err(error) => {
            audit::emit(&who, &Record::failed(&error, &plan.issuer));
            ctx.metrics.error(KIND, error.reason().as_str());
            (
                Sync::Failed {
                    reason: error.reason(),
                    message: error.to_string(),
                },
                Some(error),
            )
        }
    };
    let reachability = issuer::check(
        &ctx.http,
        &plan.issuer,
        discovered.as_ref().map(|d| d.jwks.as_str()),
    )
    .await;
    let next = status::compute(trust, &sync, Some(&reachability), now());
    let unreachable = matches!(reachability, issuer::Reachability::Unreachable { .. });
    if write_status(ctx, trust, &next).await? {
        if let Some(error) = &failure {
            ctx.cloud_warning(&reference, "Sync", error, None).await;
        }
        if let issuer::Reachability::Unreachable { reason, message } = &reachability {
            ctx.event(
                &reference,
                EventType::Warning,
                reason.as_str(),
                "CheckIssuer",
                message.clone(),
            )
            .await;
        }
    }
    if failure.is_none() && !unreachable {
        ctx.synced.record(key, inputs);
    } else {
        ctx.synced.forget(&key);
    }
    Ok(Action::requeue(requeue::jittered(match failure {
        Some(error) => error.requeue_after(),
        None if unreachable => requeue::ISSUER_RETRY,
        None => ctx.settings.resync,
    })))
}

/// Ensures the trust's cloud object; the record says what changed, if anything.
async fn ensure(
    object: &TrustObject,
    ctx: &Context,
) -> Result<(Object, Option<Record>), CloudError> {
    match object {
        TrustObject::AwsOidcProvider(intent) => {
            let ensured = ctx
                .clouds
                .oidc_providers()?
                .ensure_oidc_provider(intent)
                .await?;
            let record = Record::ensured(Cloud::Aws, &ensured.state.arn, &ensured, intent);
            Ok((Object::Aws(ensured.state), record))
        }
        TrustObject::GcpWorkloadIdentityProvider(intent) => {
            let ensured = ctx
                .clouds
                .pools()?
                .ensure_workload_identity_provider(intent)
                .await?;
            let record =
                Record::ensured(Cloud::Gcp, &ensured.state.provider_name, &ensured, intent);
            Ok((Object::Gcp(ensured.state), record))
        }
        TrustObject::None => Ok((Object::None, None)),
    }
}

async fn cleanup(trust: &FederatedTrust, ctx: &Context) -> Result<Action, Error> {
    let name = trust.name_any();
    let reference = trust.object_ref(&());
    if trust.spec.deletion_policy == DeletionPolicy::Retain {
        ctx.event(
            &reference,
            EventType::Normal,
            "Retained",
            "Delete",
            "deletionPolicy: Retain; the trust's cloud objects are left in place".to_owned(),
        )
        .await;
        return Ok(Action::await_change());
    }
    let who = Who {
        kind: KIND,
        resource: &name,
        trust: &name,
        drift: false,
    };
    let owner = Owner::trust(&ctx.settings.cluster, &name);
    let issuer = trust
        .status
        .as_ref()
        .and_then(|s| s.issuer.clone())
        .or_else(|| trust.spec.issuer.as_ref().map(|i| i.url.clone()));
    let result: Result<Option<(String, Deleted)>, CloudError> = async {
        if let (Some(aws), Some(issuer)) = (&trust.spec.aws, &issuer) {
            let still_used = Api::<FederatedTrust>::all(ctx.client.clone())
                .list(&ListParams::default())
                .await
                .map_err(|e| {
                    CloudError::new(
                        crate::cloud::ErrorKind::Unavailable,
                        Cloud::Aws,
                        "ListFederatedTrusts",
                        e.to_string(),
                    )
                })?
                .items
                .iter()
                .filter(|t| t.name_any() != name && t.metadata.deletion_timestamp.is_none())
                .any(|t| {
                    t.spec
                        .aws
                        .as_ref()
                        .is_some_and(|a| a.account_id == aws.account_id)
                        && t.status.as_ref().and_then(|s| s.issuer.as_deref())
                            == Some(issuer.as_str())
                });
            let release = OidcProviderRelease {
                account_id: aws.account_id.clone(),
                partition: aws.partition.as_str().to_owned(),
                issuer: issuer.clone(),
                owner: owner.clone(),
                still_used,
            };
            let deleted = ctx
                .clouds
                .oidc_providers()?
                .delete_oidc_provider(&release)
                .await?;
            let arn = crate::cloud::aws::oidc_provider_arn(
                aws.partition.as_str(),
                &aws.account_id,
                issuer,
            );
            return Ok(Some((arn, deleted)));
        }
        if let Some(gcp) = &trust.spec.gcp {
            let target = WorkloadIdentityRef {
                project_number: gcp.project_number.clone(),
                pool_id: gcp.pool_id.clone(),
                provider_id: gcp.provider_id.clone(),
                owner: owner.clone(),
            };
            let deleted = ctx
                .clouds
                .pools()?
                .delete_workload_identity_provider(&target)
                .await?;
            let object = passport_crds::naming::gcp_provider_name(
                &gcp.project_number,
                &gcp.pool_id,
                &gcp.provider_id,
            );
            return Ok(Some((object, deleted)));
        }
        Ok(None)
    }
    .await;
    match result {
        Ok(Some((object, deleted))) => {
            let cloud = trust.spec.cloud().unwrap_or(Cloud::Oidc);
            if let Some(record) = Record::deleted(cloud, &object, &deleted) {
                audit::emit(&who, &record);
            }
            Ok(Action::await_change())
        }
        Ok(None) => Ok(Action::await_change()),
        Err(error) => {
            audit::emit(&who, &Record::failed(&error, &name));
            ctx.metrics.error(KIND, error.reason().as_str());
            let note = format!("cleaning up the cloud trust failed, the deletion waits: {error}");
            ctx.cloud_warning(&reference, "Delete", &error, Some(note))
                .await;
            // An error keeps the finalizer (kube-runtime removes it after an Ok).
            Err(Error::Cleanup(error))
        }
    }
}

async fn write_status(
    ctx: &Context,
    trust: &FederatedTrust,
    next: &FederatedTrustStatus,
) -> Result<bool, Error> {
    if !status::changed(trust.status.as_ref(), next) {
        return Ok(false);
    }
    patch_status(
        &Api::<FederatedTrust>::all(ctx.client.clone()),
        &trust.name_any(),
        next,
    )
    .await
}
