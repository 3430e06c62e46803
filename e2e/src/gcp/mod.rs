//! A stateful fake of the Google Cloud endpoints Passport uses: IAM workload identity pools and
//! providers, service-account IAM policies, the STS token exchange and service-account
//! impersonation, served over HTTP and HTTPS from one router.
//!
//! One server answers all three Google hosts, since their paths do not overlap. With `base`
//! being [`GcpFake::https`]`().base` (or the HTTP one):
//! - IAM (`https://iam.googleapis.com/`): `{base}/v1/projects/...`
//! - STS (`https://sts.googleapis.com/v1/token`): `{base}/v1/token`
//! - IAM Credentials (`https://iamcredentials.googleapis.com/`):
//!   `{base}/v1/projects/-/serviceAccounts/{email}:generateAccessToken`
//!
//! Cloud Storage (`https://storage.googleapis.com`) is served on a port of its own
//! ([`GcpFake::storage_url`], see `storage.rs`).
//!
//! Test-only additions, absent at Google: `GET /_whoami` (who a Bearer access token stands
//! for), `POST /_gcp/serviceAccounts` (`{"email": ..., "displayName": ...}` seeds a service
//! account) and `POST|DELETE /_faults` (see [`crate::faults`]).

mod attributes;
mod credentials;
mod error;
mod keys;
mod model;
mod policy;
mod pools;
mod proto3;
mod providers;
pub mod routes;
mod state;
mod storage;
mod sts;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use anyhow::Context as _;
use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use routes::{Api, ROUTES, Route};

use crate::{
    faults::Faults,
    oidc::{IssuerRedirects, JwksVerifier},
    serve::Server,
    tls::SharedCa,
};
use error::{ApiError, bad_json};
use routes::{Endpoint, Miss};
use state::{Config, Project, Store};

/// How to start a [`GcpFake`].
pub struct GcpOptions {
    ca: SharedCa,
    projects: Vec<Project>,
    service_accounts: Vec<String>,
    config: Config,
    faults: Faults,
    storage_faults: Faults,
    ports: (u16, u16),
    issuer_redirects: IssuerRedirects,
}

impl GcpOptions {
    /// Options with Google's defaults: 60 workload-identity writes per project per minute,
    /// operations done on the first poll, 30 days of soft-delete retention, one-hour tokens.
    /// `ca` serves the HTTPS endpoint and is the only CA trusted when fetching an issuer's
    /// discovery document and JWKS.
    pub fn new(ca: SharedCa) -> Self {
        Self {
            ca,
            projects: Vec::new(),
            service_accounts: Vec::new(),
            config: Config {
                writes_per_minute: 60,
                operation_polls: 1,
                soft_delete_retention: Duration::from_secs(30 * 24 * 3600),
                access_token_lifetime: Duration::from_secs(3600),
                require_authentication: false,
            },
            faults: Faults::default(),
            storage_faults: Faults::default(),
            ports: (0, 0),
            issuer_redirects: IssuerRedirects::default(),
        }
    }

    /// Where STS fetches some issuers' keys instead of at the issuer URL (providers without
    /// `jwksJson`).
    pub fn issuer_redirects(mut self, redirects: IssuerRedirects) -> Self {
        self.issuer_redirects = redirects;
        self
    }

    /// Fixed loopback ports for HTTP and HTTPS (0, the default, picks free ones).
    pub fn ports(mut self, http: u16, https: u16) -> Self {
        self.ports = (http, https);
        self
    }

    /// Adds a project known by ID and number (e.g. `("demo-project", "123456789012")`).
    pub fn project(mut self, id: &str, number: &str) -> Self {
        self.projects.push(Project {
            id: id.to_owned(),
            number: number.to_owned(),
        });
        self
    }

    /// Seeds a service account (`name@<project-id>.iam.gserviceaccount.com`).
    pub fn service_account(mut self, email: &str) -> Self {
        self.service_accounts.push(email.to_owned());
        self
    }

    /// Workload identity pool/provider writes allowed per project per minute.
    pub fn writes_per_minute(mut self, limit: usize) -> Self {
        self.config.writes_per_minute = limit;
        self
    }

    /// How many `operations.get` calls it takes for an operation to report `done`.
    pub fn operation_polls(mut self, polls: u32) -> Self {
        self.config.operation_polls = polls.max(1);
        self
    }

    /// How long soft-deleted pools and providers stay restorable.
    pub fn soft_delete_retention(mut self, retention: Duration) -> Self {
        self.config.soft_delete_retention = retention;
        self
    }

    /// Refuses IAM calls (pools, providers, operations, service accounts and their policies)
    /// that carry no Bearer token. Tokens that are present are verified either way.
    pub fn require_authentication(mut self) -> Self {
        self.config.require_authentication = true;
        self
    }

    /// Uses this fault queue (e.g. one shared with other fakes).
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }
}

/// Where a running fake answers, for one scheme.
#[derive(Debug, Clone)]
pub struct GcpEndpoints {
    /// `http(s)://127.0.0.1:PORT`, no trailing slash.
    pub base: String,
    /// Stands for `https://iam.googleapis.com/` (with the trailing slash).
    pub iam: String,
    /// Stands for `https://sts.googleapis.com/v1/token`.
    pub sts_token: String,
    /// Stands for `https://iamcredentials.googleapis.com/` (with the trailing slash).
    pub iamcredentials: String,
}

impl GcpEndpoints {
    fn new(base: String) -> Self {
        Self {
            iam: format!("{base}/"),
            sts_token: format!("{base}/v1/token"),
            iamcredentials: format!("{base}/"),
            base,
        }
    }

    /// The `service_account_impersonation_url` for `email`.
    pub fn impersonation_url(&self, email: &str) -> String {
        format!(
            "{}v1/projects/-/serviceAccounts/{email}:generateAccessToken",
            self.iamcredentials
        )
    }
}

/// State shared by the handlers.
pub(crate) struct Shared {
    store: Mutex<Store>,
    verifier: JwksVerifier,
    storage: Mutex<storage::Buckets>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        // A handler never panics while holding the lock, and the data stays usable if one did.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cloud Storage's buckets. Never held together with [`Self::lock`].
    fn storage(&self) -> MutexGuard<'_, storage::Buckets> {
        self.storage.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running fake. Dropping it stops both servers.
pub struct GcpFake {
    http: Server,
    https: Server,
    storage: Server,
    shared: Arc<Shared>,
    faults: Faults,
    storage_faults: Faults,
}

impl GcpFake {
    /// Starts the fake on two loopback ports, one HTTP and one HTTPS.
    pub async fn start(options: GcpOptions) -> anyhow::Result<Self> {
        let (router, shared) = build(&options)?;
        let (http_port, https_port) = options.ports;
        let http = Server::start(router.clone(), None, http_port).await?;
        let tls = options.ca.loopback_server_config().await?;
        let https = Server::start(router, Some(tls), https_port).await?;
        let storage = Server::https(
            crate::faults::wrap(
                storage::router(shared.clone()),
                options.storage_faults.clone(),
            ),
            options.ca.loopback_server_config().await?,
        )
        .await?;
        Ok(Self {
            http,
            https,
            storage,
            shared,
            faults: options.faults,
            storage_faults: options.storage_faults,
        })
    }

    /// Endpoints over plain HTTP.
    pub fn http(&self) -> GcpEndpoints {
        GcpEndpoints::new(self.http.url())
    }

    /// Endpoints over HTTPS (certificate from the stack CA, for `localhost` and `127.0.0.1`).
    pub fn https(&self) -> GcpEndpoints {
        GcpEndpoints::new(self.https.url())
    }

    /// The fault queue in front of every endpoint but Cloud Storage.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Cloud Storage over HTTPS, standing in for `https://storage.googleapis.com`:
    /// `STORAGE_EMULATOR_HOST`. JSON API under `{url}/storage/v1/` and `{url}/upload/storage/v1/`,
    /// public reads at `{url}/{bucket}/{object}`.
    pub fn storage_url(&self) -> String {
        self.storage.url()
    }

    /// Creates a Cloud Storage bucket of project `project_number` whose objects anyone may read
    /// (what `buckets.insert` then `setIamPolicy` with `allUsers` do); false when it exists.
    pub fn create_public_bucket(&self, name: &str, project_number: &str) -> bool {
        self.shared.storage().seed_public(name, project_number)
    }

    /// The fault queue in front of Cloud Storage (answered in the JSON API's error shape).
    pub fn storage_faults(&self) -> &Faults {
        &self.storage_faults
    }

    /// Creates a key for a seeded service account and returns Google's JSON key file for it
    /// (`type: service_account`), usable by google-cloud-auth for self-signed JWT access.
    pub fn service_account_key(&self, email: &str) -> anyhow::Result<Value> {
        keys::create(&mut self.shared.lock(), email)
    }

    /// Seeds a service account at run time.
    pub fn add_service_account(&self, email: &str) -> anyhow::Result<()> {
        policy::seed(&mut self.shared.lock(), email, None)
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("seeding service account {email}: {}", e.message))
    }
}

/// The router (wrapped with fault injection) and the state behind it.
fn build(options: &GcpOptions) -> anyhow::Result<(Router, Arc<Shared>)> {
    let client = options
        .ca
        .client()
        .context("building the issuer discovery client")?;
    let mut store = Store::new(options.config.clone(), options.projects.clone());
    for email in &options.service_accounts {
        policy::seed(&mut store, email, None)
            .map_err(|e| anyhow::anyhow!("seeding service account {email}: {}", e.message))?;
    }
    let shared = Arc::new(Shared {
        store: Mutex::new(store),
        verifier: JwksVerifier::with_redirects(client, options.issuer_redirects.clone()),
        storage: Mutex::new(storage::Buckets::default()),
    });
    let router = Router::new().fallback(dispatch).with_state(shared.clone());
    Ok((crate::faults::wrap(router, options.faults.clone()), shared))
}

/// One request, taken apart for the handlers.
pub(crate) struct Call {
    params: HashMap<&'static str, String>,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Call {
    fn param(&self, name: &str) -> &str {
        self.params
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }

    fn query(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// The JSON body as `T`; an empty body counts as `{}`. `message_field` names the request
    /// field in Google's unknown-field message (e.g. `workload_identity_pool`).
    fn json<T: DeserializeOwned>(&self, message_field: &str) -> Result<T, ApiError> {
        let body: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &self.body
        };
        let raw: Value = serde_json::from_slice(body).map_err(|e| bad_json(&e, message_field))?;
        serde_json::from_value(proto3::normalize(raw)).map_err(|e| bad_json(&e, message_field))
    }

    /// The Bearer token of the `Authorization` header.
    fn bearer(&self) -> Option<&str> {
        let value = self.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }
}

const MAX_BODY: usize = 8 * 1024 * 1024;

async fn dispatch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let matched = match routes::find(parts.method.as_str(), parts.uri.path()) {
        Ok(matched) => matched,
        Err(Miss::NotFound | Miss::MethodNotAllowed) => {
            return ApiError::not_found(format!(
                "The requested URL {} was not found on this server.",
                parts.uri.path()
            ))
            .into_response();
        }
    };
    let query = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(e) => {
            return ApiError::invalid_argument(format!("cannot read the request body: {e}"))
                .into_response();
        }
    };
    let call = Call {
        params: matched.params,
        query,
        headers: parts.headers,
        body,
    };
    if matched.endpoint.is_iam()
        && let Err(e) = keys::authenticate(&shared.lock(), &call)
    {
        return e.into_response();
    }
    let result = match matched.endpoint {
        Endpoint::CreatePool => pools::create(&shared, &call),
        Endpoint::ListPools => pools::list(&shared, &call),
        Endpoint::GetPool => pools::get(&shared, &call),
        Endpoint::PatchPool => pools::patch(&shared, &call),
        Endpoint::DeletePool => pools::delete(&shared, &call),
        Endpoint::UndeletePool => pools::undelete(&shared, &call),
        Endpoint::GetPoolOperation | Endpoint::GetProviderOperation => {
            pools::get_operation(&shared, &call)
        }
        Endpoint::CreateProvider => providers::create(&shared, &call),
        Endpoint::ListProviders => providers::list(&shared, &call),
        Endpoint::GetProvider => providers::get(&shared, &call),
        Endpoint::PatchProvider => providers::patch(&shared, &call),
        Endpoint::DeleteProvider => providers::delete(&shared, &call),
        Endpoint::UndeleteProvider => providers::undelete(&shared, &call),
        Endpoint::GetServiceAccount => policy::get_service_account(&shared, &call),
        Endpoint::GetIamPolicy => policy::get_iam_policy(&shared, &call),
        Endpoint::SetIamPolicy => policy::set_iam_policy(&shared, &call),
        Endpoint::SeedServiceAccount => {
            return match policy::seed_from_call(&shared, &call) {
                Ok(body) => (StatusCode::CREATED, Json(body)).into_response(),
                Err(e) => e.into_response(),
            };
        }
        Endpoint::GenerateAccessToken => credentials::generate_access_token(&shared, &call),
        Endpoint::WhoAmI => credentials::whoami(&shared, &call),
        Endpoint::Token => {
            return match sts::token(&shared, &call).await {
                Ok(body) => Json(body).into_response(),
                Err(e) => e.into_response(),
            };
        }
    };
    match result {
        Ok(body) => Json::<Value>(body).into_response(),
        Err(e) => e.into_response(),
    }
}
