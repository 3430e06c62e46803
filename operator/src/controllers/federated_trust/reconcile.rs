//! The FederatedTrust reconciler: discovers the issuer when the spec names none, ensures the
//! cloud trust (AWS OIDC provider, GCP pool and provider with the cluster's JWKS when asked),
//! publishes the issuer's documents when `spec.issuer.publish` asks (keeping retired keys
//! through their overlap), checks the issuer as a cloud would see it, and honours
//! `deletionPolicy`.

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
    publish,
    status::{self, Object, Published, Sync},
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
            let next = status::compute(trust, &Sync::Refused(&refusal), None, None, now());
            if write_status(ctx, trust, &next).await? {
                ctx.refused(&reference, &refusal).await;
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
                ctx.cloud_changed(&reference, &who, &record).await;
            }
            (Sync::Synced((&plan, object)), None)
        }
        Err(error) => {
            audit::emit(&who, &Record::failed(&error, &plan.issuer));
            ctx.metrics.error(KIND, error.reason().as_str());
            (Sync::failed(&error), Some(error))
        }
    };
    // Published before the check, so that the check sees what was just written.
    let published = match trust.spec.issuer.as_ref().and_then(|i| i.publish.as_ref()) {
        Some(spec) => Some(publish_issuer(trust, spec, discovered.as_ref(), &who, ctx).await),
        None => None,
    };
    let reachability = issuer::check(
        &ctx.http,
        &plan.issuer,
        discovered.as_ref().map(|d| d.jwks.as_str()),
    )
    .await;
    let next = status::compute(
        trust,
        &sync,
        Some(&reachability),
        published.as_ref().map(|p| &p.published),
        now(),
    );
    let unreachable = matches!(reachability, issuer::Reachability::Unreachable { .. });
    if unreachable {
        // Our copy of the cluster's keys may be what is stale (a rotation): read them afresh.
        ctx.issuer.invalidate().await;
    }
    let publish_failed = published
        .as_ref()
        .is_some_and(|p| p.published.state.status == passport_crds::conditions::Status::False);
    let rotation_ends = published.as_ref().and_then(|p| p.next_retirement);
    if let Some(published) = &published {
        for (reason, note) in &published.events {
            ctx.event(
                &reference,
                EventType::Normal,
                reason,
                "Publish",
                note.clone(),
            )
            .await;
        }
    }
    if write_status(ctx, trust, &next).await? {
        if let Some(error) = &failure {
            ctx.cloud_warning(&reference, "Sync", error, None).await;
        }
        if let Some(state) = published
            .as_ref()
            .map(|p| &p.published.state)
            .filter(|s| s.status == passport_crds::conditions::Status::False)
        {
            ctx.event(
                &reference,
                EventType::Warning,
                state.reason.as_str(),
                "Publish",
                state.message.clone(),
            )
            .await;
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
    // A rotation in progress comes back when its next key retires, whatever the memo says.
    if failure.is_none() && !unreachable && !publish_failed && rotation_ends.is_none() {
        ctx.synced.record(key, inputs);
    } else {
        ctx.synced.forget(&key);
    }
    let until_retirement = rotation_ends.map(|at| {
        let left = at.duration_since(jiff::Timestamp::now());
        std::time::Duration::try_from(left).unwrap_or_default() + std::time::Duration::from_secs(1)
    });
    let after = match failure {
        Some(error) => error.requeue_after(),
        None if unreachable || publish_failed => requeue::ISSUER_RETRY,
        None => ctx.settings.resync,
    };
    Ok(Action::requeue(match until_retirement {
        // Not jittered: the key should go when its overlap ends, not up to a fifth later.
        Some(left) if left < after => left,
        _ => requeue::jittered(after),
    }))
}

/// What publishing the issuer did.
struct Publishing {
    published: Published,
    next_retirement: Option<jiff::Timestamp>,
    /// Normal Events: each document written, a rotation started or ended.
    events: Vec<(&'static str, String)>,
}

/// Publishes the cluster's discovery document and JWKS where `spec` says, keeping the keys the
/// cluster dropped through their overlap ([`publish::plan`]). Writes only what differs from the
/// bucket's copy: a steady state reads two objects and writes none.
async fn publish_issuer(
    trust: &FederatedTrust,
    spec: &passport_crds::federated_trust::IssuerPublish,
    discovered: Option<&issuer::Discovered>,
    who: &Who<'_>,
    ctx: &Context,
) -> Publishing {
    use passport_crds::conditions::{ConditionType, Reason, State, Status};
    let failed = |reason: Reason, message: String| Publishing {
        published: Published {
            state: State::new(
                ConditionType::IssuerPublished,
                Status::False,
                reason,
                message,
            ),
            status: None,
        },
        next_retirement: None,
        events: Vec::new(),
    };
    let Some((bucket, prefix)) = crate::cloud::store::Bucket::of(spec) else {
        return failed(
            Reason::PublishFailed,
            "spec.issuer.publish names no bucket: set s3, gcs or azureBlob".to_owned(),
        );
    };
    let Some(discovered) = discovered else {
        return failed(
            Reason::PublishFailed,
            "the cluster's issuer and keys could not be read from the API server \
             (/.well-known/openid-configuration, /openid/v1/jwks): nothing was published"
                .to_owned(),
        );
    };
    let stores = match ctx.clouds.stores() {
        Ok(stores) => stores,
        Err(error) => return failed(Reason::PublishFailed, error.to_string()),
    };
    let cluster_jwks: serde_json::Value = match serde_json::from_str(&discovered.jwks) {
        Ok(jwks) => jwks,
        Err(e) => {
            return failed(
                Reason::PublishFailed,
                format!("the API server's /openid/v1/jwks is not JSON: {e}"),
            );
        }
    };
    let key = |path: &str| {
        if prefix.is_empty() {
            path.to_owned()
        } else {
            format!("{prefix}/{path}")
        }
    };
    let public_url = spec.public_url.clone().unwrap_or_else(|| {
        let base = stores.public_base(&bucket);
        if prefix.is_empty() {
            base
        } else {
            format!("{base}/{prefix}")
        }
    });
    let result: Result<Publishing, crate::cloud::CloudError> = async {
        let (jwks_key, discovery_key) = (key(publish::JWKS_PATH), key(publish::DISCOVERY_PATH));
        let stored_jwks = stores.read(&bucket, &jwks_key).await?;
        let stored_discovery = stores.read(&bucket, &discovery_key).await?;
        let published_jwks = stored_jwks
            .as_deref()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(bytes).ok());
        let overlap = match ctx.settings.issuer_key_overlap {
            Some(overlap) => overlap,
            None => publish::overlap(
                longest_token(ctx, &trust.name_any()).await,
                ctx.settings.issuer_key_margin,
            ),
        };
        let previous = trust.status.as_ref().and_then(|s| s.publication.as_ref());
        let plan = publish::plan(
            &discovered.issuer,
            &public_url,
            &cluster_jwks,
            published_jwks.as_ref(),
            previous,
            jiff::Timestamp::now(),
            overlap,
        );
        let mut events = Vec::new();
        for (object_key, body, content_type, stored) in [
            // The keys first: a discovery document never points at a JWKS without them.
            (
                &jwks_key,
                &plan.jwks,
                publish::JWKS_CONTENT_TYPE,
                &stored_jwks,
            ),
            (
                &discovery_key,
                &plan.discovery,
                publish::DISCOVERY_CONTENT_TYPE,
                &stored_discovery,
            ),
        ] {
            if stored.as_deref() == Some(body.as_slice()) {
                continue;
            }
            stores
                .write(
                    &bucket,
                    &crate::cloud::store::StoredObject {
                        key: object_key,
                        body,
                        content_type,
                        cache_control: publish::CACHE_CONTROL,
                    },
                )
                .await?;
            let object = format!("{}/{object_key}", bucket.describe());
            let operation = if stored.is_some() { "update" } else { "create" };
            let record = Record::change(
                bucket.cloud(),
                &object,
                operation,
                vec![format!("published for issuer {}", discovered.issuer)],
                &String::from_utf8_lossy(body),
            );
            audit::emit(who, &record);
            events.push(("IssuerPublished", format!("wrote {object}")));
        }
        let was_rotating = previous.is_some_and(|p| !p.retiring_keys.is_empty());
        let (state, rotation) =
            publish::condition(&public_url, &discovered.issuer, &plan.status, was_rotating);
        events.extend(rotation);
        Ok(Publishing {
            published: Published {
                state,
                status: Some(plan.status),
            },
            next_retirement: plan.next_retirement,
            events,
        })
    }
    .await;
    match result {
        Ok(publishing) => publishing,
        Err(error) => {
            audit::emit(who, &Record::failed(&error, &bucket.describe()));
            ctx.metrics.error(KIND, Reason::PublishFailed.as_str());
            failed(
                Reason::PublishFailed,
                format!("publishing to {} failed: {error}", bucket.describe()),
            )
        }
    }
}

/// The longest token lifetime of the trust's AccessPolicies; None when the list fails or no
/// policy uses the trust.
async fn longest_token(ctx: &Context, trust: &str) -> Option<i64> {
    let policies = Api::<passport_crds::AccessPolicy>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|error| tracing::warn!(%error, "listing AccessPolicies for the key overlap"))
        .ok()?;
    policies
        .items
        .iter()
        .filter(|p| p.spec.trust_ref.name == trust)
        .map(|p| p.spec.token.expiration_seconds)
        .max()
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
        .or_else(|| trust.spec.issuer_url().map(str::to_owned));
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
