//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it:
//! one replica holds the Lease and renews it; the others take it over once it has not been
//! renewed for its duration. Only the holder reconciles; every replica serves the webhook.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Api, Client,
    api::{PostParams, ResourceExt as _},
};

/// Timing of the election (client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long a Lease holds without renewal.
    pub lease: Duration,
    /// How long the holder keeps leading while its renewals fail: shorter than `lease`, so that
    /// it stops before another replica may take over.
    pub renew_deadline: Duration,
    /// How often the holder renews, and how often the others try.
    pub retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// One candidate.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
}

impl Elector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing,
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&self) {
        let mut waiting_logged = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became the leader");
                    return;
                }
                Ok(false) if !waiting_logged => {
                    tracing::info!(lease = %self.name, "another replica leads; waiting");
                    waiting_logged = true;
                }
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, lease = %self.name, "leader election failed"),
            }
            tokio::time::sleep(self.timing.retry).await;
        }
    }

    /// Renews the Lease until renewals have failed for the renew deadline; returns then, before
    /// another replica may take over.
    pub async fn hold(&self) {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.name, "the Lease was taken over");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, lease = %self.name, "renewing the Lease failed");
                    if last_renewed.elapsed() > self.timing.renew_deadline {
                        return;
                    }
                }
            }
        }
    }

    /// Gives the Lease up at shutdown, so that another replica leads at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_default();
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "released the Lease"),
            Err(error) => tracing::warn!(%error, lease = %self.name, "releasing the Lease failed"),
        }
    }

    /// One round: takes the Lease when free or expired, renews it when held. A conflict means
    /// another replica won this round.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = jiff::Timestamp::now();
        let seconds = i32::try_from(self.timing.lease.as_secs()).unwrap_or(15);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return conflict_is_false(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.get_or_insert_default();
        let held_by_us = spec.holder_identity.as_deref() == Some(&self.identity);
        if !held_by_us {
            let expires = spec.renew_time.as_ref().map(|t| {
                t.0 + jiff::SignedDuration::from_secs(i64::from(
                    spec.lease_duration_seconds.unwrap_or(seconds),
                ))
            });
            let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
            if !free && expires.is_some_and(|e| e > now) {
                return Ok(false);
            }
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(seconds);
        spec.renew_time = Some(MicroTime(now));
        let name = lease.name_any();
        conflict_is_false(
            self.api
                .replace(&name, &PostParams::default(), &lease)
                .await,
        )
    }
}

fn conflict_is_false(result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}
