//! The AccessPolicy reconciler: reads the trust and the namespace, asks `desired` what the cloud
//! should hold, makes it so (`sync`), labels the namespace for the webhook, verifies when asked,
//! and writes the status only when it changed. Cloud errors become conditions; only Kubernetes
//! API errors fail the reconcile.

use std::{sync::Arc, time::Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::{
    Api, Resource as _, ResourceExt as _,
    api::{ListParams, Patch, PatchParams},
    runtime::{
        controller::Action,
        events::EventType,
        finalizer::{Event as Finalizer, finalizer},
    },
};
use passport_crds::{
    AccessPolicy, FederatedTrust,
    federated_trust::DeletionPolicy,
    keys::{FIELD_MANAGER, FINALIZER, NAMESPACE_ENABLED, NAMESPACE_ENABLED_BY},
    naming,
};

use super::{
    desired::{self, Inputs},
    predating,
    status::{self, Observed, Sync},
    sync,
};
use crate::{
    audit::{self, Record, Who},
    cloud::Owner,
    controllers::{
        context::{Context, Error, Inputs as SyncInputs},
        now, patch_status, requeue, synced_at,
    },
};

pub const KIND: &str = "AccessPolicy";

/// The controller's reconcile function.
pub async fn reconcile(policy: Arc<AccessPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = policy.namespace().unwrap_or_default();
    let api: Api<AccessPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let outcome = std::sync::Mutex::new("applied");
    let result = finalizer(&api, FINALIZER, policy, |event| async {
        match event {
            Finalizer::Apply(policy) => {
                let (action, label) = apply(&policy, &ctx).await?;
                *outcome.lock().unwrap_or_else(|e| e.into_inner()) = label;
                Ok(action)
            }
            Finalizer::Cleanup(policy) => {
                *outcome.lock().unwrap_or_else(|e| e.into_inner()) = "deleted";
                cleanup(&policy, &ctx).await
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    let label = match &result {
        Ok(_) => *outcome.lock().unwrap_or_else(|e| e.into_inner()),
        Err(error) => {
            ctx.metrics.error(KIND, error.reason());
            "error"
        }
    };
    ctx.metrics.reconciled(KIND, label, started.elapsed());
    result
}

/// After a Kubernetes API error: try again soon, with jitter.
/// After an error: a failed cleanup waits as its cloud error says; Kubernetes API errors retry
/// soon. Both with jitter.
pub fn error_policy(policy: Arc<AccessPolicy>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(
        policy = %format!("{}/{}", policy.namespace().unwrap_or_default(), policy.name_any()),
        %error,
        "reconcile failed; retrying"
    );
    Action::requeue(requeue::jittered(error.requeue_after()))
}

async fn apply(policy: &AccessPolicy, ctx: &Context) -> Result<(Action, &'static str), Error> {
    let namespace = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let resource = format!("{namespace}/{name}");
    let trust_name = policy.spec.trust_ref.name.clone();
    let trust = Api::<FederatedTrust>::all(ctx.client.clone())
        .get_opt(&trust_name)
        .await?;
    let labels = Api::<Namespace>::all(ctx.client.clone())
        .get_opt(&namespace)
        .await?
        .map(|ns| ns.labels().clone())
        .unwrap_or_default();
    let key = format!("{KIND}/{resource}");
    let inputs = SyncInputs {
        generation: policy.metadata.generation,
        // The label Passport itself puts on the namespace changes nothing the policy reads.
        digest: crate::audit::digest(&(
            trust
                .as_ref()
                .and_then(|t| t.metadata.resource_version.clone()),
            labels
                .iter()
                .filter(|(k, _)| k.as_str() != NAMESPACE_ENABLED)
                .collect::<Vec<_>>(),
        )),
    };
    // The memo decides, not the cached status: the cache may not have seen our own status
    // write yet when a watch event (our namespace label, say) brings the next reconcile.
    if let Some(elapsed) = ctx.synced.fresh(&key, &inputs, ctx.settings.resync) {
        // Nothing this policy depends on changed since the last full sync.
        return Ok((
            Action::requeue(requeue::jittered(
                ctx.settings.resync.saturating_sub(elapsed),
            )),
            "unchanged",
        ));
    }
    let discovered = match &trust {
        // `issuer: {publish: ...}` without a url publishes the discovered issuer: discover it.
        Some(t) if t.spec.issuer_url().is_none() => ctx.issuer.get().await.ok(),
        _ => None,
    };
    let plan = desired::build(
        policy,
        &Inputs {
            cluster: &ctx.settings.cluster,
            trust: trust.as_ref(),
            namespace_labels: &labels,
            discovered_issuer: discovered.as_ref().map(|d| d.issuer.as_str()),
            trust_policy_quota: ctx.settings.trust_policy_quota,
        },
    );
    let reference = policy.object_ref(&());
    let was_synced = policy.status.as_ref().is_some_and(|s| {
        synced_at(
            &s.conditions,
            s.observed_generation,
            policy.metadata.generation,
        )
    });
    let who = Who {
        kind: KIND,
        resource: &resource,
        trust: &trust_name,
        drift: was_synced,
    };
    let plan = match plan {
        Ok(plan) => plan,
        Err(refusal) => {
            let next = status::compute(
                policy,
                &Observed {
                    sync: Sync::Refused(&refusal),
                    verification: None,
                    azure_client_id: None,
                },
                now(),
            );
            ctx.metrics.error(KIND, refusal.reason.as_str());
            if write_status(ctx, policy, &next).await? {
                ctx.refused(&reference, &refusal).await;
            }
            // A refusal waits for the trust, the namespace or the spec to change (all watched).
            return Ok((
                Action::requeue(requeue::jittered(ctx.settings.resync)),
                "refused",
            ));
        }
    };
    if let Some(waiting) = trust.as_ref().and_then(status::trust_pending) {
        let next = status::compute(
            policy,
            &Observed {
                sync: Sync::Waiting(waiting),
                verification: None,
                azure_client_id: None,
            },
            now(),
        );
        write_status(ctx, policy, &next).await?;
        return Ok((
            Action::requeue(requeue::jittered(requeue::TRUST_PENDING)),
            "waiting",
        ));
    }
    let (records, sync_result, client_id) = match sync::apply(&plan, policy, &ctx.clouds).await {
        Ok(report) => (report.records, Ok(()), report.azure_client_id),
        Err(failed) => (failed.records, Err(failed.error), None),
    };
    for record in &records {
        ctx.cloud_changed(&reference, &who, record).await;
    }
    let (sync_state, failure) = match &sync_result {
        Ok(()) => (Sync::Synced(&plan), None),
        Err(error) => {
            audit::emit(&who, &Record::failed(error, &plan.identity));
            ctx.metrics.error(KIND, error.reason().as_str());
            (Sync::failed(error), Some(error.clone()))
        }
    };
    if failure.is_none() {
        label_namespace(ctx, &namespace).await?;
    }
    let verification = match (&failure, &trust) {
        (None, Some(trust)) if policy.spec.verify || ctx.settings.verify_all => {
            let mut checked = policy.clone();
            if let Some(id) = &client_id {
                checked
                    .status
                    .get_or_insert_default()
                    .azure
                    .get_or_insert_default()
                    .client_id = Some(id.clone());
            }
            Some(ctx.verifier.verify(&checked, trust, &plan).await)
        }
        _ => None,
    };
    let mut next = status::compute(
        policy,
        &Observed {
            sync: sync_state,
            verification: verification.clone(),
            azure_client_id: client_id,
        },
        now(),
    );
    if let Some(blocking) = trust.as_ref().and_then(status::trust_blocking) {
        status::block_ready(&mut next, policy, blocking, now());
    }
    let without = match failure {
        None => pods_without_credentials(ctx, policy, &namespace, &resource).await,
        Some(_) => None,
    };
    if let Some(found) = &without {
        next.pods_without_credentials = i32::try_from(found.count).ok().filter(|n| *n > 0);
    }
    if write_status(ctx, policy, &next).await? {
        if let Some(error) = &failure {
            ctx.cloud_warning(&reference, "Sync", error, None).await;
        }
        if let Some(found) = &without
            && found.count > 0
            && policy
                .status
                .as_ref()
                .and_then(|s| s.pods_without_credentials)
                != next.pods_without_credentials
        {
            ctx.event(
                &reference,
                EventType::Warning,
                "PodsWithoutCredentials",
                "Sync",
                predating::note(found, &namespace),
            )
            .await;
        }
        if let Some(Err(message)) = &verification {
            ctx.event(
                &reference,
                EventType::Warning,
                "VerificationFailed",
                "Verify",
                message.clone(),
            )
            .await;
        }
    }
    let verified = !matches!(verification, Some(Err(_)));
    if failure.is_none() && verified {
        ctx.synced.record(key, inputs);
    } else {
        ctx.synced.forget(&key);
    }
    Ok(match (failure, verification) {
        (Some(error), _) => (
            Action::requeue(requeue::jittered(error.requeue_after())),
            "failed",
        ),
        // Credentials take a while to propagate (Azure: minutes): verify again soon.
        (None, Some(Err(_))) => (
            Action::requeue(requeue::jittered(requeue::VERIFY_RETRY)),
            "unverified",
        ),
        _ => (
            Action::requeue(requeue::jittered(ctx.settings.resync)),
            "applied",
        ),
    })
}

async fn cleanup(policy: &AccessPolicy, ctx: &Context) -> Result<Action, Error> {
    let namespace = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let resource = format!("{namespace}/{name}");
    let trust_name = policy.spec.trust_ref.name.clone();
    let trust = Api::<FederatedTrust>::all(ctx.client.clone())
        .get_opt(&trust_name)
        .await?;
    let reference = policy.object_ref(&());
    let retain = trust
        .as_ref()
        .is_some_and(|t| t.spec.deletion_policy == DeletionPolicy::Retain);
    if retain {
        ctx.event(
            &reference,
            EventType::Normal,
            "Retained",
            "Delete",
            format!(
                "FederatedTrust {trust_name} has deletionPolicy: Retain; the policy's cloud \
                 objects are left in place"
            ),
        )
        .await;
    } else {
        let owner = Owner::policy(&ctx.settings.cluster, &namespace, &name);
        let sid = naming::aws_statement_sid(&ctx.settings.cluster, &namespace, &name);
        let who = Who {
            kind: KIND,
            resource: &resource,
            trust: &trust_name,
            drift: false,
        };
        match sync::cleanup(policy, &owner, &ctx.clouds, &sid).await {
            Ok(report) => {
                for record in &report.records {
                    audit::emit(&who, record);
                }
            }
            Err(failed) => {
                for record in &failed.records {
                    audit::emit(&who, record);
                }
                let error = failed.error;
                audit::emit(&who, &Record::failed(&error, &resource));
                ctx.metrics.error(KIND, error.reason().as_str());
                // The finalizer stays until the cloud is clean; the condition says why.
                let next = status::deleting(policy, error.reason(), &error.to_string(), now());
                if write_status(ctx, policy, &next).await? {
                    ctx.cloud_warning(&reference, "Delete", &error, None).await;
                }
                // An error keeps the finalizer (kube-runtime removes it after an Ok).
                return Err(Error::Cleanup(error));
            }
        }
    }
    unlabel_namespace_if_unused(ctx, &namespace, &name).await?;
    ctx.synced.forget(&format!("{KIND}/{resource}"));
    Ok(Action::await_change())
}

/// Patches the status when it changed; returns whether it wrote.
async fn write_status(
    ctx: &Context,
    policy: &AccessPolicy,
    next: &passport_crds::AccessPolicyStatus,
) -> Result<bool, Error> {
    if !status::changed(policy.status.as_ref(), next) {
        return Ok(false);
    }
    let api: Api<AccessPolicy> =
        Api::namespaced(ctx.client.clone(), &policy.namespace().unwrap_or_default());
    patch_status(&api, &policy.name_any(), next).await
}

/// The policy's pods that predate it, or None when the pods cannot be listed (a missing RBAC
/// rule is logged, never fatal).
async fn pods_without_credentials(
    ctx: &Context,
    policy: &AccessPolicy,
    namespace: &str,
    resource: &str,
) -> Option<predating::WithoutCredentials> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    match pods.list(&ListParams::default()).await {
        Ok(list) => Some(predating::pods_without_credentials(
            &list.items,
            resource,
            &policy.spec.service_accounts,
        )),
        Err(error) => {
            tracing::warn!(%error, namespace, "listing pods to find those without credentials");
            None
        }
    }
}

/// Labels the namespace so the webhook's namespaceSelector covers it.
async fn label_namespace(ctx: &Context, namespace: &str) -> Result<(), Error> {
    set_namespace_label(ctx, namespace, true).await
}

/// Removes the namespace label when no other AccessPolicy in it remains.
async fn unlabel_namespace_if_unused(
    ctx: &Context,
    namespace: &str,
    leaving: &str,
) -> Result<(), Error> {
    let policies: Api<AccessPolicy> = Api::namespaced(ctx.client.clone(), namespace);
    let others = policies
        .list_metadata(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.name.as_deref() != Some(leaving))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .count();
    if others > 0 {
        return Ok(());
    }
    set_namespace_label(ctx, namespace, false).await
}

/// Sets or removes `passport.dev/enabled` on a namespace that exists and is not terminating;
/// writes only when the label differs. It removes only a label it set itself (marked by the
/// `passport.dev/enabled-by` annotation): one set by hand stays.
async fn set_namespace_label(ctx: &Context, namespace: &str, enabled: bool) -> Result<(), Error> {
    let api = Api::<Namespace>::all(ctx.client.clone());
    let Some(ns) = api.get_opt(namespace).await? else {
        return Ok(());
    };
    let current = ns.labels().get(NAMESPACE_ENABLED).map(String::as_str);
    let ours = ns
        .annotations()
        .get(NAMESPACE_ENABLED_BY)
        .map(String::as_str)
        == Some("passport");
    if (enabled && current == Some("true"))
        || (!enabled && (current.is_none() || !ours))
        || ns.metadata.deletion_timestamp.is_some()
    {
        if !enabled && current.is_some() && !ours {
            tracing::debug!(namespace, "kept the namespace label someone else set");
        }
        return Ok(());
    }
    let value = enabled.then_some("true");
    let by = enabled.then_some("passport");
    let patch = serde_json::json!({"metadata": {
        "labels": {NAMESPACE_ENABLED: value},
        "annotations": {NAMESPACE_ENABLED_BY: by},
    }});
    api.patch(
        namespace,
        &PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        },
        &Patch::Merge(&patch),
    )
    .await?;
    if enabled {
        tracing::info!(namespace, "labelled the namespace for the webhook");
    } else {
        tracing::info!(
            namespace,
            "the namespace's last AccessPolicy is gone; removed its label"
        );
    }
    Ok(())
}
