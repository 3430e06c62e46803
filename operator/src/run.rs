//! `passport run`: the operator process. It serves `/healthz`, `/readyz` and `/metrics` on a
//! plain-HTTP port, campaigns for the Lease, and while it leads runs both controllers until
//! SIGTERM (or Ctrl-C), when in-flight reconciles finish and the Lease is released.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{Router, extract::State, http::StatusCode, routing::get};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client, ResourceExt as _,
    runtime::{Controller, WatchStreamExt as _, reflector::ObjectRef, watcher},
};
use passport_crds::{AccessPolicy, FederatedTrust};
use tokio::sync::watch;

use crate::{
    cloud::{Calls, CloudConfig, aws::AwsProvider, azure::AzureProvider, gcp::GcpProvider},
    controllers::{
        access_policy,
        context::{Clouds, Context, Settings},
        federated_trust,
        issuer::ClusterIssuer,
        verify::{Verifier, VerifyConfig},
    },
    leader::{Elector, Timing},
    metrics::Metrics,
    webhook::{self, WebhookArgs},
};

/// A cluster name is a DNS label (1 to 63 lowercase letters, digits and `-`), so that it fits
/// every cloud's tag, label and description rules unchanged.
fn cluster_name(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{value:?} is not a cluster name: use 1 to 63 lowercase letters, digits and '-', \
             starting and ending with a letter or digit (in a cluster install, set \
             PASSPORT_CLUSTER_NAME in config/default/params.env)"
        ))
    }
}

/// Flags of `passport run` (each also read from the environment).
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// This cluster's name: part of every cloud object's name and ownership tags, so that
    /// clusters sharing an account never touch each other's objects.
    #[arg(long, env = "PASSPORT_CLUSTER_NAME", value_parser = cluster_name)]
    pub cluster_name: String,
    /// Where `/healthz`, `/readyz` and `/metrics` listen (plain HTTP).
    #[arg(long, env = "PASSPORT_HEALTH_ADDR", default_value = "127.0.0.1:8081")]
    pub health_addr: SocketAddr,
    /// Seconds between drift checks of a resource in steady state.
    #[arg(long, env = "PASSPORT_RESYNC_SECONDS", default_value_t = 600)]
    pub resync_seconds: u64,
    /// How many resources of each kind reconcile at once. Bounds memory and the burst of
    /// cloud calls when many resources change together (a restart, a trust edit).
    #[arg(long, env = "PASSPORT_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,
    /// Verify every AccessPolicy with a token exchange, whatever its `spec.verify`.
    #[arg(long, env = "PASSPORT_VERIFY_ALL")]
    pub verify_all: bool,
    /// Seconds a key the cluster dropped stays in a published issuer's JWKS (`spec.issuer.
    /// publish`). Default: the longest token lifetime of the trust's AccessPolicies plus
    /// `--issuer-key-margin-seconds`. Set it when tokens outlive what the policies say (tokens
    /// requested outside Passport), or shorter in a drill.
    #[arg(long, env = "PASSPORT_ISSUER_KEY_OVERLAP_SECONDS")]
    pub issuer_key_overlap_seconds: Option<u64>,
    /// Added to the longest token lifetime for the key overlap: clock skew, CDN caches and
    /// the clouds' own JWKS caches.
    #[arg(
        long,
        env = "PASSPORT_ISSUER_KEY_MARGIN_SECONDS",
        default_value_t = 900
    )]
    pub issuer_key_margin_seconds: u64,
    /// Campaign for the Lease before reconciling (turn off only for a single replica).
    #[arg(long, env = "PASSPORT_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the Lease (the operator's own namespace in a cluster).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the Lease.
    #[arg(long, default_value = "passport-operator")]
    pub lease_name: String,
    /// This replica's identity in the Lease and in Events (the pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    #[command(flatten)]
    pub cloud: CloudConfig,
    #[command(flatten)]
    pub verify: VerifyConfig,
    #[command(flatten)]
    pub webhook: WebhookArgs,
}

#[derive(Clone)]
struct Health {
    /// The API server answered.
    ready: watch::Receiver<bool>,
    /// The webhook's stores are filled (always true without the webhook).
    webhook_ready: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
}

/// Runs the operator until SIGTERM or Ctrl-C.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API (KUBECONFIG or the in-cluster config)")?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "passport".to_owned()),
            std::process::id()
        )
    });
    let calls = Calls::default();
    let metrics = Arc::new(Metrics::new(calls.clone()));
    let (ready_tx, ready_rx) = watch::channel(false);
    let (webhook_ready_tx, webhook_ready_rx) = watch::channel(args.webhook.no_webhook);
    let listener = tokio::net::TcpListener::bind(args.health_addr)
        .await
        .with_context(|| format!("listening on {}", args.health_addr))?;
    let health_addr = listener.local_addr()?;
    tracing::info!(%health_addr, "serving /healthz, /readyz and /metrics");
    let health = Health {
        ready: ready_rx,
        webhook_ready: webhook_ready_rx,
        metrics: metrics.clone(),
    };
    let server = tokio::spawn(async move {
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics_text))
            .with_state(health);
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the health server stopped");
        }
    });

    let clouds = clouds(&args.cloud, &calls).await?;
    let http = args.cloud.http_client()?;
    let sts = if clouds.roles.is_some() {
        let sdk = crate::cloud::aws::sdk_config(&args.cloud, None).await?;
        Some(aws_sdk_sts::Client::new(&sdk))
    } else {
        None
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        clouds,
        Settings {
            cluster: args.cluster_name.clone(),
            resync: Duration::from_secs(args.resync_seconds.max(1)),
            trust_policy_quota: args.cloud.aws_trust_policy_quota,
            verify_all: args.verify_all,
            issuer_key_overlap: args.issuer_key_overlap_seconds.map(Duration::from_secs),
            issuer_key_margin: Duration::from_secs(args.issuer_key_margin_seconds),
        },
        http.clone(),
        ClusterIssuer::new(client.clone(), Duration::from_secs(30)),
        Verifier::new(
            client.clone(),
            http,
            sts,
            args.verify.clone(),
            args.webhook.pod_azure_authority_host.clone(),
        ),
        metrics.clone(),
        Some(identity.clone()),
    ));
    client
        .apiserver_version()
        .await
        .context("reaching the Kubernetes API")?;
    let _ = ready_tx.send(true);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    // Why the process stops on its own (a webhook that cannot serve), if it does.
    let failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: finishing in-flight reconciles");
            let _ = stop_tx.send(true);
        });
    }
    // The webhook serves on every replica, leader or not. If it cannot serve, the process stops
    // (a replica that is up but refuses admissions would fail pods silently).
    let webhook_task = (!args.webhook.no_webhook).then(|| {
        let serve = webhook::Serve {
            client: client.clone(),
            cluster: args.cluster_name.clone(),
            namespace: args.lease_namespace.clone(),
            metrics,
            recorder: kube::runtime::events::Recorder::new(
                client.clone(),
                kube::runtime::events::Reporter {
                    controller: "passport-webhook".to_owned(),
                    instance: Some(identity.clone()),
                },
            ),
            ready: webhook_ready_tx,
        };
        let webhook_args = args.webhook.clone();
        let stop_tx = stop_tx.clone();
        let failure = failure.clone();
        tokio::spawn(async move {
            if let Err(error) = webhook::serve(&webhook_args, serve).await {
                let message = format!("the webhook stopped: {error:#}");
                tracing::error!("{message}");
                *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
                let _ = stop_tx.send(true);
            }
        })
    });
    let failed = || failure.lock().unwrap_or_else(|e| e.into_inner()).clone();

    let elector = args.leader_elect.then(|| {
        Elector::new(
            client.clone(),
            &args.lease_namespace,
            &args.lease_name,
            &identity,
            Timing::default(),
        )
    });
    if let Some(elector) = &elector {
        let mut stop = stop_rx.clone();
        tokio::select! {
            () = elector.acquire() => {}
            _ = stop.wait_for(|s| *s) => {
                server.abort();
                return match failed() {
                    Some(message) => Err(anyhow::anyhow!(message)),
                    None => Ok(()),
                };
            }
        }
    }
    let lost = {
        let controllers = controllers(client, ctx, args.concurrency, stopped(stop_rx.clone()));
        match &elector {
            Some(elector) => tokio::select! {
                () = controllers => false,
                () = elector.hold() => true,
            },
            None => {
                controllers.await;
                false
            }
        }
    };
    if let Some(elector) = &elector {
        elector.release().await;
    }
    server.abort();
    if let Some(task) = webhook_task {
        task.abort();
    }
    if lost {
        anyhow::bail!("lost the Lease; exiting so that a restart campaigns again");
    }
    match failed() {
        Some(message) => Err(anyhow::anyhow!(message)),
        None => Ok(()),
    }
}

/// A controller over every `K` whose store keeps no `managedFields`: nothing here reads them,
/// and for a resource whose status Passport writes they are a tree of JSON values several times
/// the size of the spec (kube-runtime's documented pruning, `Controller::for_stream`).
fn pruned<K>(api: Api<K>) -> Controller<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = kube::runtime::reflector::store();
    let objects = watcher(api, watcher::Config::default())
        .modify(|object| object.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects();
    Controller::for_stream(objects, reader)
}

/// Both controllers, until `shutdown` resolves.
async fn controllers(
    client: Client,
    ctx: Arc<Context>,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let trusts: Api<FederatedTrust> = Api::all(client.clone());
    let policies: Api<AccessPolicy> = Api::all(client.clone());
    let config = || kube::runtime::controller::Config::default().concurrency(concurrency);
    let trust_controller = pruned(trusts.clone())
        .with_config(config())
        .graceful_shutdown_on(shutdown.clone())
        .run(
            federated_trust::reconcile::reconcile,
            federated_trust::reconcile::error_policy,
            ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "FederatedTrust controller");
            }
        });
    let policy_controller = pruned(policies).with_config(config());
    let store = policy_controller.store();
    let by_namespace = store.clone();
    let policy_controller = policy_controller
        // A trust change re-reconciles the policies that use it.
        .watches(trusts, watcher::Config::default(), move |trust| {
            let name = trust.name_any();
            store
                .state()
                .into_iter()
                .filter(|p| p.spec.trust_ref.name == name)
                .map(|p| ObjectRef::from_obj(&*p))
                .collect::<Vec<_>>()
        })
        // A namespace's labels decide whether trusts admit it.
        .watches(
            Api::<Namespace>::all(client),
            watcher::Config::default(),
            move |namespace| {
                let name = namespace.name_any();
                by_namespace
                    .state()
                    .into_iter()
                    .filter(|p| p.namespace().as_deref() == Some(name.as_str()))
                    .map(|p| ObjectRef::from_obj(&*p))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(
            access_policy::reconcile::reconcile,
            access_policy::reconcile::error_policy,
            ctx,
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "AccessPolicy controller");
            }
        });
    futures::join!(trust_controller, policy_controller);
}

/// The providers for every cloud Passport has credentials for.
async fn clouds(config: &CloudConfig, calls: &Calls) -> anyhow::Result<Clouds> {
    let mut clouds = Clouds::default();
    let aws = Arc::new(AwsProvider::from_env(config, calls.clone()).await?);
    clouds.oidc_providers = Some(aws.clone());
    clouds.roles = Some(aws);
    match GcpProvider::from_env(config, calls.clone()).await {
        Ok(gcp) => {
            let gcp = Arc::new(gcp);
            clouds.pools = Some(gcp.clone());
            clouds.bindings = Some(gcp);
        }
        Err(error) => tracing::info!("GCP is off: {error:#}"),
    }
    match AzureProvider::from_env(config, calls.clone()) {
        Ok(azure) => clouds.credentials = Some(Arc::new(azure)),
        Err(error) => tracing::info!("Azure is off: {error:#}"),
    }
    // The issuer stores, with the same credential chains. S3 gets its own SDK configuration:
    // the IAM endpoint override must not reach it (AWS_ENDPOINT_URL_S3 does, through the chain).
    let s3 = crate::cloud::aws::sdk_config(config, None).await?;
    let google = google_cloud_auth::credentials::Builder::default()
        .with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
        .build()
        .ok()
        .filter(|_| clouds.pools.is_some());
    let azure = crate::cloud::azure::Credentials::from_env().ok();
    clouds.stores = Some(Arc::new(crate::cloud::store::Stores::new(
        config,
        calls,
        Some(s3),
        google,
        azure,
    )?));
    Ok(clouds)
}

fn stopped(
    mut stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static {
    let (tx, rx) = watch::channel(());
    tokio::spawn(async move {
        let _ = stop.wait_for(|s| *s).await;
        drop(tx);
    });
    futures::FutureExt::shared(async move {
        let mut rx = rx;
        // Resolves when the sender is dropped.
        while rx.changed().await.is_ok() {}
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn readyz(State(health): State<Health>) -> (StatusCode, &'static str) {
    if *health.ready.borrow() && *health.webhook_ready.borrow() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics_text(State(health): State<Health>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health.metrics.encode(),
    )
}
