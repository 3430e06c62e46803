//! Azure emulator: a stateful fake of Azure Resource Manager's user-assigned identity and
//! federated identity credential endpoints, and of the Entra ID token endpoint that exchanges a
//! workload's JWT for an access token. One router, served over HTTP and HTTPS (Azure's identity
//! libraries refuse an `http://` authority host), wrapped with fault injection.
//!
//! ```no_run
//! # async fn demo(ca: passport_e2e::tls::SharedCa) -> anyhow::Result<()> {
//! use passport_e2e::azure::{AzureFake, AzureOptions, IdentitySeed};
//! let seed = IdentitySeed::new("sub-1", "rg", "app", "tenant-guid");
//! let fake = AzureFake::start(AzureOptions::new(ca).identity(seed)).await?;
//! // ARM:   {fake.arm_url()}/subscriptions/sub-1/resourceGroups/rg/providers/...
//! // Entra: AZURE_AUTHORITY_HOST={fake.authority_url()}
//! # Ok(()) }
//! ```
//!
//! Blob Storage is served on a port of its own ([`AzureFake::blob_url`], see `blob.rs`), for
//! the storage accounts named in [`AzureOptions::storage_accounts`].
//!
//! Test-only extras: `GET /_whoami` (ARM bearer auth) says which principal a token stands for;
//! `POST|DELETE /_faults` queues injected failures (see `crate::faults`).

mod arm;
mod blob;
mod entra;
mod fault_shape;
pub mod spec;
pub mod state;

use std::{
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::Duration,
};

use anyhow::Context as _;
use axum::{
    Router,
    http::{HeaderMap, Uri, header},
    routing::{get, post},
};
use serde_json::{Map, Value};

pub use blob::STORAGE_SCOPE;
pub use state::{MAX_FICS_PER_IDENTITY, ServicePrincipal};

use crate::{
    faults::{self, Faults},
    oidc::{Issuer, IssuerRedirects, JwksVerifier},
    serve::Server,
    tls::SharedCa,
};
use state::{Identity, IdentityKey, Store, uuid_from};

/// The scope a client asks Entra for to call ARM.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
/// The audience Kubernetes service-account tokens carry for Azure workload identity.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
/// How long a FIC write keeps its identity busy unless configured otherwise.
pub const DEFAULT_FIC_WRITE_TIME: Duration = Duration::from_millis(50);

/// A subscription and the tenant it belongs to.
#[derive(Clone, Debug)]
pub struct Subscription {
    pub id: String,
    pub tenant_id: String,
}

/// A user-assigned identity that exists when the fake starts.
#[derive(Clone, Debug)]
pub struct IdentitySeed {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    pub tags: Map<String, Value>,
    pub tenant_id: String,
    pub client_id: String,
    pub principal_id: String,
}

impl IdentitySeed {
    /// An identity in `westus` with client and principal IDs derived from its resource ID
    /// (stable across runs).
    pub fn new(subscription_id: &str, resource_group: &str, name: &str, tenant_id: &str) -> Self {
        let key = format!("{subscription_id}/{resource_group}/{name}").to_ascii_lowercase();
        Self {
            subscription_id: subscription_id.to_owned(),
            resource_group: resource_group.to_owned(),
            name: name.to_owned(),
            location: "westus".to_owned(),
            tags: Map::new(),
            tenant_id: tenant_id.to_owned(),
            client_id: uuid_from(&format!("client:{key}")),
            principal_id: uuid_from(&format!("principal:{key}")),
        }
    }

    /// The identity's ARM resource ID.
    pub fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
            self.subscription_id, self.resource_group, self.name
        )
    }
}

/// How to start the fake.
#[derive(Clone)]
pub struct AzureOptions {
    /// Serves HTTPS, and (unless `jwks_client` is set) is the CA trusted when fetching an
    /// assertion issuer's discovery document and JWKS.
    pub ca: SharedCa,
    /// Subscriptions beyond those implied by `identities`.
    pub subscriptions: Vec<Subscription>,
    pub identities: Vec<IdentitySeed>,
    pub service_principals: Vec<ServicePrincipal>,
    /// A bearer token ARM accepts for any subscription, for tests that do not exercise Entra.
    pub static_token: Option<String>,
    /// How long each FIC write keeps its identity busy (a concurrent write then gets 409).
    pub fic_write_time: Duration,
    /// How long a new or changed FIC takes before the token endpoint honours it (real Entra:
    /// minutes). Zero by default.
    pub fic_propagation: Duration,
    /// The client used to fetch issuers' JWKS; defaults to one trusting only `ca`.
    pub jwks_client: Option<reqwest::Client>,
    /// Where the token endpoint fetches some assertion issuers' keys instead of at their URL.
    pub issuer_redirects: IssuerRedirects,
    /// Blob Storage accounts that exist (the part before `.blob.core.windows.net`).
    pub storage_accounts: Vec<String>,
    pub faults: Faults,
    /// Faults for Blob Storage, answered in Storage's XML error shape.
    pub blob_faults: Faults,
}

impl AzureOptions {
    pub fn new(ca: SharedCa) -> Self {
        Self {
            ca,
            subscriptions: Vec::new(),
            identities: Vec::new(),
            service_principals: Vec::new(),
            static_token: None,
            fic_write_time: DEFAULT_FIC_WRITE_TIME,
            fic_propagation: Duration::ZERO,
            jwks_client: None,
            issuer_redirects: IssuerRedirects::default(),
            storage_accounts: Vec::new(),
            faults: Faults::default(),
            blob_faults: Faults::default(),
        }
    }

    /// Adds a Blob Storage account.
    pub fn storage_account(mut self, name: &str) -> Self {
        self.storage_accounts.push(name.to_owned());
        self
    }

    pub fn identity(mut self, seed: IdentitySeed) -> Self {
        self.identities.push(seed);
        self
    }

    pub fn subscription(mut self, id: &str, tenant_id: &str) -> Self {
        self.subscriptions.push(Subscription {
            id: id.to_owned(),
            tenant_id: tenant_id.to_owned(),
        });
        self
    }

    pub fn service_principal(mut self, tenant_id: &str, client_id: &str, secret: &str) -> Self {
        self.service_principals.push(ServicePrincipal {
            tenant_id: tenant_id.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: secret.to_owned(),
        });
        self
    }

    pub fn static_token(mut self, token: &str) -> Self {
        self.static_token = Some(token.to_owned());
        self
    }

    pub fn fic_write_time(mut self, time: Duration) -> Self {
        self.fic_write_time = time;
        self
    }

    pub fn fic_propagation(mut self, time: Duration) -> Self {
        self.fic_propagation = time;
        self
    }

    fn store(&self) -> anyhow::Result<Store> {
        let mut store = Store {
            propagation: self.fic_propagation,
            service_principals: self.service_principals.clone(),
            ..Store::default()
        };
        for sub in &self.subscriptions {
            store
                .subscriptions
                .insert(sub.id.to_ascii_lowercase(), sub.tenant_id.clone());
        }
        for seed in &self.identities {
            let tenant = store
                .subscriptions
                .entry(seed.subscription_id.to_ascii_lowercase())
                .or_insert_with(|| seed.tenant_id.clone());
            anyhow::ensure!(
                tenant.eq_ignore_ascii_case(&seed.tenant_id),
                "identity {} is in tenant {} but its subscription belongs to tenant {tenant}",
                seed.id(),
                seed.tenant_id
            );
            store.identities.insert(
                IdentityKey::new(&seed.subscription_id, &seed.resource_group, &seed.name),
                Identity {
                    seed: seed.clone(),
                    fics: Vec::new(),
                    busy: false,
                },
            );
        }
        Ok(store)
    }
}

/// State shared by the handlers of both servers.
struct Shared {
    store: Mutex<Store>,
    /// Signs the access tokens Entra hands out; ARM verifies them against its JWKS.
    signer: Issuer,
    verifier: JwksVerifier,
    blobs: Mutex<blob::Accounts>,
    static_token: Option<String>,
    fic_write_time: Duration,
    /// The api-versions the embedded swagger documents declare.
    api_versions: Vec<String>,
    /// (http, https) ports, known once both servers listen; tells which scheme a request used.
    ports: OnceLock<(u16, u16)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        // A poisoned lock only means a handler panicked mid-request; the data is still usable.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn blobs(&self) -> MutexGuard<'_, blob::Accounts> {
        self.blobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `scheme://host:port` the client used to reach us, so links in responses point back at
    /// the same server.
    fn base_url(&self, headers: &HeaderMap, uri: &Uri) -> String {
        let (http_port, https_port) = self.ports.get().copied().unwrap_or_default();
        let host = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| format!("127.0.0.1:{https_port}"));
        let port = host
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok());
        let scheme = if port == Some(http_port) && http_port != 0 {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}")
    }
}

/// The running fake. Dropping it stops both servers.
pub struct AzureFake {
    shared: Arc<Shared>,
    faults: Faults,
    blob_faults: Faults,
    http: Server,
    https: Server,
    blob: Server,
}

impl AzureFake {
    /// Checks the served routes against the embedded swagger, then serves the fake on two free
    /// loopback ports (HTTP and HTTPS).
    pub async fn start(options: AzureOptions) -> anyhow::Result<Self> {
        let documents = spec::documents()?;
        spec::check_routes(&documents)?;
        let jwks_client = match &options.jwks_client {
            Some(client) => client.clone(),
            None => options.ca.client()?,
        };
        let shared = Arc::new(Shared {
            store: Mutex::new(options.store()?),
            signer: Issuer::generate("https://sts.windows.net")
                .context("generating the Entra signing key")?,
            verifier: JwksVerifier::with_redirects(jwks_client, options.issuer_redirects.clone()),
            blobs: Mutex::new(blob::Accounts::new(&options.storage_accounts)),
            static_token: options.static_token.clone(),
            fic_write_time: options.fic_write_time,
            api_versions: documents.into_iter().map(|d| d.version).collect(),
            ports: OnceLock::new(),
        });
        // The reshaping layer sits outside the fault middleware so it sees injected faults.
        let app = faults::wrap(router(shared.clone()), options.faults.clone())
            .layer(axum::middleware::from_fn(fault_shape::reshape));
        let tls = options.ca.loopback_server_config().await?;
        let http = Server::http(app.clone()).await?;
        let https = Server::https(app, tls).await?;
        // Set once, right after both servers bound; a failure would mean a second start.
        let _ = shared.ports.set((http.addr().port(), https.addr().port()));
        let blob = Server::https(
            faults::wrap(blob::router(shared.clone()), options.blob_faults.clone())
                .layer(axum::middleware::from_fn(blob::reshape_faults)),
            options.ca.loopback_server_config().await?,
        )
        .await?;
        Ok(Self {
            shared,
            faults: options.faults,
            blob_faults: options.blob_faults,
            http,
            https,
            blob,
        })
    }

    /// ARM's base URL (HTTPS), standing in for `https://management.azure.com`.
    pub fn arm_url(&self) -> String {
        self.https.url()
    }

    /// The Entra authority host (HTTPS, trailing slash like `https://login.microsoftonline.com/`):
    /// the value for `AZURE_AUTHORITY_HOST`.
    pub fn authority_url(&self) -> String {
        format!("{}/", self.https.url())
    }

    /// The same router over plain HTTP.
    pub fn http_url(&self) -> String {
        self.http.url()
    }

    /// The token endpoint for `tenant_id`.
    pub fn token_url(&self, tenant_id: &str) -> String {
        format!("{}/{tenant_id}/oauth2/v2.0/token", self.https.url())
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Blob Storage over HTTPS, path-style: `{blob_url}/{account}/{container}/{blob}` stands for
    /// `https://{account}.blob.core.windows.net/{container}/{blob}`.
    pub fn blob_url(&self) -> String {
        self.blob.url()
    }

    /// An account's blob endpoint, `{blob_url}/{account}` (what Azure SDKs take as the account
    /// URL with path-style addressing).
    pub fn blob_account_url(&self, account: &str) -> String {
        format!("{}/{account}", self.blob.url())
    }

    /// Creates a container of a seeded storage account whose blobs anyone may read (Create
    /// Container with `x-ms-blob-public-access: blob`); false when the account is unknown or the
    /// container exists.
    pub fn create_public_container(&self, account: &str, container: &str) -> bool {
        self.shared.blobs().seed_public(account, container)
    }

    /// Faults for Blob Storage.
    pub fn blob_faults(&self) -> &Faults {
        &self.blob_faults
    }

    /// The FICs currently on an identity (by resource ID parts), as ARM would list them.
    pub fn fics(&self, subscription_id: &str, resource_group: &str, name: &str) -> Vec<Value> {
        let store = self.shared.lock();
        store
            .identities
            .get(&IdentityKey::new(subscription_id, resource_group, name))
            .map(|i| {
                let id = i.id();
                i.fics.iter().map(|s| s.fic.to_json(&id)).collect()
            })
            .unwrap_or_default()
    }
}

impl AzureFake {
    /// Whether a FIC write on the identity is being processed (a second one would get 409).
    pub fn write_in_flight(&self, subscription_id: &str, resource_group: &str, name: &str) -> bool {
        self.shared
            .lock()
            .identities
            .get(&IdentityKey::new(subscription_id, resource_group, name))
            .is_some_and(|i| i.busy)
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(entra::token))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(entra::openid_configuration),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(entra::keys))
        .route(
            "/{tenant}/discovery/instance",
            get(entra::instance_discovery),
        )
        .route("/_whoami", get(arm::whoami))
        .fallback(arm::dispatch)
        .with_state(shared)
}
