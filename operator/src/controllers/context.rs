//! What every reconcile shares: the Kubernetes client, the cloud providers, the issuer as the
//! API server publishes it, the Event recorder, the metrics, and the run's settings.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kube::{
    Client,
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use passport_crds::Cloud;

use super::{issuer::ClusterIssuer, verify::Verifier};
use crate::{
    cloud::{
        CloudError, ErrorKind, FederatedCredentials, OidcProviders, Roles, ServiceAccountBindings,
        WorkloadIdentityPools, fake::FakeCloud, store::IssuerStores,
    },
    metrics::Metrics,
};

/// The cloud providers `passport run` could build. A cloud Passport has no credentials for is
/// None; its resources then report that instead of failing opaquely.
#[derive(Clone, Default)]
pub struct Clouds {
    pub oidc_providers: Option<Arc<dyn OidcProviders>>,
    pub roles: Option<Arc<dyn Roles>>,
    pub pools: Option<Arc<dyn WorkloadIdentityPools>>,
    pub bindings: Option<Arc<dyn ServiceAccountBindings>>,
    pub credentials: Option<Arc<dyn FederatedCredentials>>,
    /// The object stores issuers are published to.
    pub stores: Option<Arc<dyn IssuerStores>>,
}

impl Clouds {
    /// Every cloud served by one in-memory fake.
    pub fn fake(fake: Arc<FakeCloud>) -> Self {
        Self {
            oidc_providers: Some(fake.clone()),
            roles: Some(fake.clone()),
            pools: Some(fake.clone()),
            bindings: Some(fake.clone()),
            stores: Some(fake.clone()),
            credentials: Some(fake),
        }
    }

    pub fn oidc_providers(&self) -> Result<&dyn OidcProviders, CloudError> {
        self.oidc_providers
            .as_deref()
            .ok_or_else(|| unconfigured(Cloud::Aws))
    }

    pub fn roles(&self) -> Result<&dyn Roles, CloudError> {
        self.roles
            .as_deref()
            .ok_or_else(|| unconfigured(Cloud::Aws))
    }

    pub fn pools(&self) -> Result<&dyn WorkloadIdentityPools, CloudError> {
        self.pools
            .as_deref()
            .ok_or_else(|| unconfigured(Cloud::Gcp))
    }

    pub fn bindings(&self) -> Result<&dyn ServiceAccountBindings, CloudError> {
        self.bindings
            .as_deref()
            .ok_or_else(|| unconfigured(Cloud::Gcp))
    }

    pub fn stores(&self) -> Result<&dyn IssuerStores, CloudError> {
        self.stores.as_deref().ok_or_else(|| {
            CloudError::new(
                ErrorKind::AccessDenied,
                Cloud::Oidc,
                "Configure",
                "Passport runs without object stores, so it cannot publish issuers",
            )
        })
    }

    pub fn credentials(&self) -> Result<&dyn FederatedCredentials, CloudError> {
        self.credentials
            .as_deref()
            .ok_or_else(|| unconfigured(Cloud::Azure))
    }
}

fn unconfigured(cloud: Cloud) -> CloudError {
    let how = match cloud {
        Cloud::Aws => {
            "give the operator AWS credentials (IRSA, EKS Pod Identity, or the AWS_* \
                       environment)"
        }
        Cloud::Gcp => {
            "give the operator Google application default credentials \
                       (GOOGLE_APPLICATION_CREDENTIALS or workload identity)"
        }
        Cloud::Azure => {
            "give the operator Azure credentials (AZURE_CLIENT_ID with \
                         AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE, and AZURE_TENANT_ID)"
        }
        Cloud::Oidc => "nothing is needed for OIDC relying parties",
    };
    CloudError::new(
        ErrorKind::AccessDenied,
        cloud,
        "Configure",
        format!("Passport runs without {cloud} credentials: {how}, then restart it"),
    )
}

/// Settings of the run that reconciles read.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `--cluster-name`: part of every cloud object's name and owner tags.
    pub cluster: String,
    /// How often a resource in steady state is re-read from the cloud to repair drift.
    pub resync: Duration,
    /// The AWS account's trust-policy quota.
    pub trust_policy_quota: usize,
    /// Verify every AccessPolicy with a token exchange, whatever its `spec.verify`.
    pub verify_all: bool,
    /// How long a key the cluster dropped stays in a published JWKS; None: the longest token
    /// lifetime of the trust's policies plus `issuer_key_margin`.
    pub issuer_key_overlap: Option<Duration>,
    pub issuer_key_margin: Duration,
}

/// What a resource's last full sync saw. A reconcile with the same inputs within the resync
/// period (the one its own status write triggers, say) skips the cloud entirely; a changed spec,
/// trust or namespace, or the period's end, syncs again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inputs {
    pub generation: Option<i64>,
    /// The trust's resourceVersion and the namespace's labels, digested (policies), or the
    /// cluster's JWKS (trusts).
    pub digest: String,
}

/// The last full sync of every resource, by `kind/namespace/name`.
#[derive(Default)]
pub struct Synced {
    entries: Mutex<HashMap<String, (Inputs, Instant)>>,
}

impl Synced {
    /// How long ago a full sync saw exactly `inputs`, if it did within `period`.
    pub fn fresh(&self, key: &str, inputs: &Inputs, period: Duration) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(seen, _)| seen == inputs)
            .map(|(_, at)| at.elapsed())
            .filter(|elapsed| *elapsed < period)
    }

    pub fn record(&self, key: String, inputs: Inputs) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (inputs, Instant::now()));
    }

    pub fn forget(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// The shared state of both controllers.
pub struct Context {
    pub client: Client,
    pub clouds: Clouds,
    pub settings: Settings,
    /// For the issuer checks, trusting the system roots and the extra CA bundle.
    pub http: reqwest::Client,
    pub issuer: ClusterIssuer,
    pub verifier: Verifier,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub synced: Synced,
}

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        clouds: Clouds,
        settings: Settings,
        http: reqwest::Client,
        issuer: ClusterIssuer,
        verifier: Verifier,
        metrics: Arc<Metrics>,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: "passport".to_owned(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            clouds,
            settings,
            http,
            issuer,
            verifier,
            metrics,
            synced: Synced::default(),
        }
    }

    /// Publishes an Event about `object`; a failure to publish is logged, never fatal.
    pub async fn event(
        &self,
        object: &k8s_openapi::api::core::v1::ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            // The Events API caps notes at 1 kB.
            note: Some(truncate(note, 1000)),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, object).await {
            tracing::warn!(%error, reason, "could not publish an Event");
        }
    }

    /// A change Passport made in the cloud: its audit line, and a Normal Event on the resource,
    /// `DriftRepaired` when a resync found the cloud changed behind Passport's back, else
    /// `CloudUpdated`.
    pub async fn cloud_changed(
        &self,
        object: &k8s_openapi::api::core::v1::ObjectReference,
        who: &crate::audit::Who<'_>,
        record: &crate::audit::Record,
    ) {
        crate::audit::emit(who, record);
        let reason = if who.drift {
            "DriftRepaired"
        } else {
            "CloudUpdated"
        };
        self.event(object, EventType::Normal, reason, "Sync", record.note())
            .await;
    }

    /// A Warning Event for a refusal (a guardrail): its reason and message.
    pub async fn refused(
        &self,
        object: &k8s_openapi::api::core::v1::ObjectReference,
        refusal: &super::Refusal,
    ) {
        self.event(
            object,
            EventType::Warning,
            refusal.reason.as_str(),
            "Refuse",
            refusal.message.clone(),
        )
        .await;
    }

    /// A Warning Event for a failed cloud call: the error's reason, `action`, and `note` (the
    /// error itself when None).
    pub async fn cloud_warning(
        &self,
        object: &k8s_openapi::api::core::v1::ObjectReference,
        action: &str,
        error: &CloudError,
        note: Option<String>,
    ) {
        let note = note.unwrap_or_else(|| error.to_string());
        self.event(
            object,
            EventType::Warning,
            error.reason().as_str(),
            action,
            note,
        )
        .await;
    }
}

/// `text` cut to at most `max` bytes on a character boundary (Event notes take 1 kB).
pub(crate) fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A reconcile that could not finish. Cloud errors do not end up here: they become conditions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Kubernetes API: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("{0}")]
    Serialize(#[from] serde_json::Error),
    /// The cloud cleanup of a deleted resource failed; its finalizer stays.
    #[error("cleaning up the cloud objects: {0}")]
    Cleanup(#[source] CloudError),
}

impl Error {
    /// A bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kube(_) | Self::Finalizer(_) => "KubernetesApi",
            Self::Serialize(_) => "Serialize",
            Self::Cleanup(_) => "CleanupFailed",
        }
    }

    /// How long to wait before the next attempt.
    pub fn requeue_after(&self) -> Duration {
        match self {
            Self::Cleanup(error) => error.requeue_after(),
            Self::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::CleanupFailed(error)
                | kube::runtime::finalizer::Error::ApplyFailed(error) => error.requeue_after(),
                _ => super::requeue::KUBE_ERROR,
            },
            Self::Kube(_) | Self::Serialize(_) => super::requeue::KUBE_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cloud_without_credentials_says_how_to_give_them() {
        let clouds = Clouds::default();
        let Err(error) = clouds.roles() else {
            panic!("no AWS provider was configured");
        };
        assert_eq!(error.kind, ErrorKind::AccessDenied);
        assert!(error.message.contains("AWS credentials"), "{error}");
        assert!(clouds.credentials().is_err());
        let fake = Clouds::fake(Arc::new(FakeCloud::default()));
        assert!(fake.roles().is_ok() && fake.pools().is_ok() && fake.credentials().is_ok());
    }

    #[test]
    fn a_sync_is_fresh_only_for_the_same_inputs_within_the_period() {
        let synced = Synced::default();
        let inputs = Inputs {
            generation: Some(2),
            digest: "a".to_owned(),
        };
        let period = Duration::from_secs(60);
        assert_eq!(synced.fresh("p", &inputs, period), None);
        synced.record("p".to_owned(), inputs.clone());
        assert!(synced.fresh("p", &inputs, period).is_some());
        let edited = Inputs {
            generation: Some(3),
            ..inputs.clone()
        };
        assert_eq!(synced.fresh("p", &edited, period), None);
        assert_eq!(synced.fresh("p", &inputs, Duration::ZERO), None);
        synced.forget("p");
        assert_eq!(synced.fresh("p", &inputs, period), None);
    }

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("héllo".to_owned(), 2), "h");
        assert_eq!(truncate("short".to_owned(), 10), "short");
    }
}
