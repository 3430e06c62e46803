//! The admission webhook inside `passport run`: served on every replica (leader or not) over
//! HTTPS, with lookups from in-memory stores and TLS that Passport manages itself unless
//! another issuer provides it. The decision is `passport_webhook::review`, pure.

pub mod indexes;
pub mod lookups;
#[doc(hidden)]
pub mod null;
pub mod server;
pub mod tls;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum_server::tls_rustls::RustlsConfig;
use kube::{Client, runtime::events::Recorder};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Flags of the webhook (each also read from the environment).
#[derive(Clone, Debug, clap::Args)]
pub struct WebhookArgs {
    /// Do not serve the admission webhook (controllers only).
    #[arg(long, env = "PASSPORT_NO_WEBHOOK")]
    pub no_webhook: bool,
    /// Where the webhook listens (HTTPS).
    #[arg(long, env = "PASSPORT_WEBHOOK_ADDR", default_value = "127.0.0.1:9443")]
    pub webhook_addr: SocketAddr,
    /// The MutatingWebhookConfiguration whose `caBundle` Passport keeps current; empty leaves
    /// it to another CA injector (cert-manager's).
    #[arg(
        long,
        env = "PASSPORT_WEBHOOK_CONFIGURATION",
        default_value = "passport"
    )]
    pub webhook_configuration: String,
    /// The Secret (in the operator's namespace) holding the self-managed CA and certificate.
    #[arg(
        long,
        env = "PASSPORT_WEBHOOK_SECRET",
        default_value = "passport-webhook-tls"
    )]
    pub webhook_secret: String,
    /// Names the serving certificate covers, comma-separated (default:
    /// `passport-webhook.<namespace>.svc`, its `.cluster.local` form, `localhost`, `127.0.0.1`).
    #[arg(long, env = "PASSPORT_WEBHOOK_NAMES", value_delimiter = ',')]
    pub webhook_names: Vec<String>,
    /// Read `tls.crt` and `tls.key` (and `ca.crt`) from this folder, written by another issuer
    /// such as cert-manager, instead of managing them.
    #[arg(long, env = "PASSPORT_WEBHOOK_TLS_DIR")]
    pub webhook_tls_dir: Option<PathBuf>,
    /// Bytes of memory for the memo of recent decisions, which answers the same pod again
    /// (every pod of a ReplicaSet reaches admission the same) from the same bindings without
    /// parsing it; 0 turns it off.
    #[arg(long, env = "PASSPORT_WEBHOOK_MEMO_BYTES", default_value_t = 2 << 20)]
    pub webhook_memo_bytes: usize,
    /// How long the one direct API read after a store miss may take, in milliseconds.
    #[arg(long, env = "PASSPORT_WEBHOOK_MISS_TIMEOUT_MS", default_value_t = 2000)]
    pub webhook_miss_timeout_ms: u64,
    /// `AWS_ENDPOINT_URL_STS` written into pods (sovereign partitions, private endpoints, the
    /// local stack).
    #[arg(long, env = "PASSPORT_POD_AWS_STS_ENDPOINT")]
    pub pod_aws_sts_endpoint: Option<String>,
    /// Google STS `token_url` written into pods' credential configurations.
    #[arg(
        long,
        env = "PASSPORT_POD_GCP_TOKEN_URL",
        default_value = "https://sts.googleapis.com/v1/token"
    )]
    pub pod_gcp_token_url: String,
    /// Base URL of Google IAM Credentials for pods' impersonation.
    #[arg(
        long,
        env = "PASSPORT_POD_GCP_IAMCREDENTIALS_URL",
        default_value = "https://iamcredentials.googleapis.com"
    )]
    pub pod_gcp_iamcredentials_url: String,
    /// Overrides every Azure trust's `authorityHost` in pods (`AZURE_AUTHORITY_HOST`).
    #[arg(long, env = "PASSPORT_POD_AZURE_AUTHORITY_HOST")]
    pub pod_azure_authority_host: Option<String>,
    #[command(flatten)]
    pub compat: CompatArgs,
}

/// The EKS and Azure compatibility modes: whether Passport honours those webhooks' annotations
/// and labels, and those webhooks' own flags, with their defaults (docs/webhook.md).
#[derive(Clone, Debug, clap::Args)]
pub struct CompatArgs {
    /// Honour the EKS pod identity webhook's `eks.amazonaws.com/role-arn` service-account
    /// annotation. Turn it off while the EKS webhook itself still runs, or pods get AWS twice.
    #[arg(long, env = "PASSPORT_COMPAT_EKS", default_value_t = true, action = clap::ArgAction::Set)]
    pub compat_eks: bool,
    /// The EKS webhook's `--token-audience`.
    #[arg(
        long,
        env = "PASSPORT_EKS_TOKEN_AUDIENCE",
        default_value = "sts.amazonaws.com"
    )]
    pub eks_token_audience: String,
    /// The EKS webhook's `--token-expiration`, in seconds (600 at least).
    #[arg(long, env = "PASSPORT_EKS_TOKEN_EXPIRATION", default_value_t = 86_400,
          value_parser = clap::value_parser!(i64).range(600..))]
    pub eks_token_expiration: i64,
    /// The EKS webhook's `--sts-regional-endpoint` (a service account's
    /// `eks.amazonaws.com/sts-regional-endpoints` annotation overrides it).
    #[arg(long, env = "PASSPORT_EKS_STS_REGIONAL_ENDPOINT", default_value_t = false, action = clap::ArgAction::Set)]
    pub eks_sts_regional_endpoint: bool,
    /// The EKS webhook's `--aws-default-region`: `AWS_REGION` and `AWS_DEFAULT_REGION` for
    /// annotated pods (unset: none).
    #[arg(long, env = "PASSPORT_EKS_AWS_DEFAULT_REGION")]
    pub eks_aws_default_region: Option<String>,
    /// Honour the Azure workload identity webhook's `azure.workload.identity/use: "true"` pod
    /// label. Turn it off while the Azure webhook itself still runs.
    #[arg(long, env = "PASSPORT_COMPAT_AZURE", default_value_t = true, action = clap::ArgAction::Set)]
    pub compat_azure: bool,
    /// The Azure webhook's `AZURE_TENANT_ID`: the tenant of labelled pods whose service account
    /// names none.
    #[arg(long, env = "PASSPORT_COMPAT_AZURE_TENANT_ID")]
    pub compat_azure_tenant_id: Option<String>,
    /// The authority host the Azure webhook's `AZURE_ENVIRONMENT` selects.
    #[arg(
        long,
        env = "PASSPORT_COMPAT_AZURE_AUTHORITY_HOST",
        default_value = "https://login.microsoftonline.com/"
    )]
    pub compat_azure_authority_host: String,
}

impl CompatArgs {
    /// The webhook library's compatibility settings.
    pub fn config(&self) -> passport_webhook::config::CompatConfig {
        passport_webhook::config::CompatConfig {
            eks: self.compat_eks,
            eks_audience: self.eks_token_audience.clone(),
            eks_token_expiration: self.eks_token_expiration,
            eks_sts_regional_endpoints: self.eks_sts_regional_endpoint,
            eks_default_region: self.eks_aws_default_region.clone(),
            azure: self.compat_azure,
            azure_tenant_id: self.compat_azure_tenant_id.clone(),
            azure_authority_host: self.compat_azure_authority_host.clone(),
            ..passport_webhook::config::CompatConfig::default()
        }
    }
}

impl WebhookArgs {
    fn config(&self, cluster: &str) -> passport_webhook::Config {
        let mut config = passport_webhook::Config::new(cluster);
        config.aws_sts_endpoint = self.pod_aws_sts_endpoint.clone();
        config.gcp_token_url = self.pod_gcp_token_url.clone();
        config.gcp_iam_credentials_url = self.pod_gcp_iamcredentials_url.clone();
        config.azure_authority_host = self.pod_azure_authority_host.clone();
        config.compat = self.compat.config();
        config
    }

    fn tls(&self, namespace: &str) -> tls::TlsSettings {
        let names = if self.webhook_names.is_empty() {
            vec![
                format!("passport-webhook.{namespace}.svc"),
                format!("passport-webhook.{namespace}.svc.cluster.local"),
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
            ]
        } else {
            self.webhook_names.clone()
        };
        tls::TlsSettings {
            secret_namespace: namespace.to_owned(),
            secret_name: self.webhook_secret.clone(),
            names,
            configuration: Some(self.webhook_configuration.clone()).filter(|c| !c.is_empty()),
            cert_dir: self.webhook_tls_dir.clone(),
        }
    }
}

/// What the webhook needs from the rest of `passport run`.
pub struct Serve {
    pub client: Client,
    pub cluster: String,
    /// The operator's namespace (the TLS Secret lives there).
    pub namespace: String,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Set once the stores are filled and the certificate is served.
    pub ready: watch::Sender<bool>,
}

/// Serves the webhook until the process ends.
pub async fn serve(args: &WebhookArgs, serve: Serve) -> anyhow::Result<()> {
    let settings = args.tls(&serve.namespace);
    let material = tls::current(&serve.client, &settings)
        .await
        .context("obtaining the webhook's serving certificate")?;
    let rustls = RustlsConfig::from_pem(
        material.cert_pem.clone().into_bytes(),
        material.key_pem.clone().into_bytes(),
    )
    .await
    .context("loading the webhook's serving certificate")?;
    let (lookups, drive) = server_lookups(args, &serve);
    tokio::spawn(drive);
    tokio::spawn(tls::keep_current(
        serve.client.clone(),
        settings,
        rustls.clone(),
        material,
        Duration::from_secs(10),
    ));
    let state = Arc::new(server::WebhookState {
        lookups: lookups.clone(),
        metrics: serve.metrics.clone(),
        recorder: Some(serve.recorder.clone()),
        memo: passport_webhook::Memo::new(args.webhook_memo_bytes),
    });
    let app = server::router(state);
    let addr = args.webhook_addr;
    // Bind before reporting ready, so that a port in use fails the start, not the first pod.
    let listener = listen(addr)?;
    let ready = serve.ready;
    tokio::spawn(async move {
        if lookups.ready().await {
            let _ = ready.send(true);
        }
    });
    tracing::info!(%addr, "serving the admission webhook (HTTPS)");
    serve_https(listener, rustls, app).await
}

/// The webhook's listening socket.
pub fn listen(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves `app` over HTTPS (axum-server with rustls) until the process ends: the webhook's
/// serving path, shared with the benchmarks' null webhook so that both measure the same stack.
pub async fn serve_https(
    listener: std::net::TcpListener,
    rustls: RustlsConfig,
    app: axum::Router,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    axum_server::from_tcp_rustls(listener, rustls)?
        // A response is written as soon as it is ready, not held back by Nagle's algorithm
        // until the client acknowledges the request's last segment (the API server's Go
        // client sets the same on its side).
        .map(|tls| tls.acceptor(axum_server::accept::NoDelayAcceptor::new()))
        .serve(app.into_make_service())
        .await
        .with_context(|| format!("serving the webhook on {addr}"))
}

fn server_lookups(
    args: &WebhookArgs,
    serve: &Serve,
) -> (
    lookups::Lookups,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    lookups::Lookups::start(
        serve.client.clone(),
        Arc::new(args.config(&serve.cluster)),
        Duration::from_millis(args.webhook_miss_timeout_ms),
    )
}
