//! Service-account token signing (the Kubernetes API emulator's issuer) and token verification
//! against an issuer's published JWKS (what AWS STS, GCP STS and Entra do), shared by the stack.
//! The keys of a cluster the stack does not run can be read through its API server instead
//! ([`ClusterKeys`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, RwLock},
};

use axum::{Json, Router, extract::State, routing::get};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, jwk::JwkSet};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// Why a token was refused. The messages are what the fakes put into their error bodies.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("the token issuer {0:?} is not trusted here")]
    UntrustedIssuer(String),
    #[error("fetching the issuer's keys from {url} failed: {reason}")]
    Discovery { url: String, reason: String },
    #[error("no key with kid {0:?} in the issuer's JWKS")]
    UnknownKey(String),
    #[error("the token failed verification: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

/// An RS256 token issuer: the signing key, its JWKS and the discovery document. The key can be
/// rotated ([`Issuer::rotate`]): new tokens are then signed with a new key id, and the JWKS
/// serves only the new key (what a cluster does whose old key was dropped).
pub struct Issuer {
    url: String,
    key: RwLock<Arc<SigningKey>>,
}

struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    fn generate() -> anyhow::Result<Self> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
        let encoding = EncodingKey::from_rsa_pem(key.serialize_pem().as_bytes())?;
        let (n, e) = rsa_public_components(key.public_key_raw())?;
        // Like kube-apiserver, the key id is derived from the public key.
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(key.public_key_raw()));
        let jwk = json!({
            "use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e),
        });
        Ok(Self { kid, encoding, jwk })
    }
}

impl Issuer {
    /// Generates a fresh 2048-bit RSA key for the issuer at `url` (no trailing slash).
    pub fn generate(url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            key: RwLock::new(Arc::new(SigningKey::generate()?)),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn current(&self) -> Arc<SigningKey> {
        self.key.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The key id new tokens carry.
    pub fn kid(&self) -> String {
        self.current().kid.clone()
    }

    /// Replaces the signing key with a fresh one and returns its key id. Tokens signed before
    /// stay valid only where the old JWKS is still served (a cache, a published copy).
    pub fn rotate(&self) -> anyhow::Result<String> {
        let key = Arc::new(SigningKey::generate()?);
        let kid = key.kid.clone();
        *self.key.write().unwrap_or_else(|e| e.into_inner()) = key;
        Ok(kid)
    }

    /// The JWKS served at `/openid/v1/jwks`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.current().jwk] })
    }

    /// The document served at `/.well-known/openid-configuration`, in kube-apiserver's shape.
    pub fn discovery(&self) -> Value {
        json!({
            "issuer": self.url,
            "jwks_uri": format!("{}/openid/v1/jwks", self.url),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
    }

    /// Signs `claims` as an RS256 JWT with this issuer's key id.
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        let key = self.current();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &key.encoding)?)
    }
}

/// The public JWK (RS256, `use: sig`) of an RSA key pair, with key id `kid`.
pub fn rsa_jwk(key: &rcgen::KeyPair, kid: &str) -> anyhow::Result<Value> {
    let (n, e) = rsa_public_components(key.public_key_raw())?;
    Ok(json!({
        "use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e),
    }))
}

/// Splits a DER `RSAPublicKey` (RFC 8017: SEQUENCE { n INTEGER, e INTEGER }) into n and e,
/// without leading zero bytes.
fn rsa_public_components(der: &[u8]) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    fn read(input: &[u8], tag: u8) -> anyhow::Result<(&[u8], &[u8])> {
        anyhow::ensure!(input.first() == Some(&tag), "unexpected DER tag");
        let first = *input.get(1).ok_or_else(|| anyhow::anyhow!("short DER"))?;
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let count = usize::from(first & 0x7f);
            let bytes = input
                .get(2..2 + count)
                .ok_or_else(|| anyhow::anyhow!("short DER length"))?;
            (
                bytes
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
                2 + count,
            )
        };
        let body = input
            .get(header..header + len)
            .ok_or_else(|| anyhow::anyhow!("short DER body"))?;
        Ok((body, &input[header + len..]))
    }
    let (seq, _) = read(der, 0x30)?;
    let (n, rest) = read(seq, 0x02)?;
    let (e, _) = read(rest, 0x02)?;
    let strip = |v: &[u8]| {
        v.iter()
            .skip_while(|b| **b == 0)
            .copied()
            .collect::<Vec<_>>()
    };
    Ok((strip(n), strip(e)))
}

/// The unverified claims of a JWT, to learn its issuer before fetching keys.
pub fn peek_claims(token: &str) -> Result<Value, VerifyError> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| VerifyError::Malformed("expected three dot-separated parts".into()))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| VerifyError::Malformed(e.to_string()))
}

/// Verifies signature, `exp`, `nbf` and `iss` of `token` against `jwks`; the audience is left
/// to the caller because each cloud matches it differently. Returns the claims.
pub fn verify_with_jwks(token: &str, jwks: &Value, issuer: &str) -> Result<Value, VerifyError> {
    let set: JwkSet = serde_json::from_value(jwks.clone())
        .map_err(|e| VerifyError::Malformed(format!("JWKS: {e}")))?;
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let jwk = match &header.kid {
        Some(kid) => set
            .find(kid)
            .ok_or_else(|| VerifyError::UnknownKey(kid.clone()))?,
        None => set
            .keys
            .first()
            .ok_or_else(|| VerifyError::UnknownKey(String::new()))?,
    };
    let key = DecodingKey::from_jwk(jwk)?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.validate_aud = false;
    validation.validate_nbf = true;
    validation.leeway = 5;
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    Ok(jsonwebtoken::decode::<Value>(token, &key, &validation)?.claims)
}

/// Where to fetch an issuer's discovery document and JWKS instead of at the issuer URL itself:
/// issuer URL -> base URL, as a CDN or a DNS name in front of a bucket would make it (the
/// issuer `https://oidc.example.com/c1` served from `https://127.0.0.1:PORT/bucket/c1`). The
/// discovery document fetched from the base must still name the token's issuer. Cheap to clone;
/// clones share the map, so one map given to several fakes redirects them all.
#[derive(Clone, Debug, Default)]
pub struct IssuerRedirects(Arc<RwLock<HashMap<String, String>>>);

impl IssuerRedirects {
    /// From now on, fetch the keys of `issuer` from `base_url` (`{base_url}/.well-known/...`).
    pub fn set(&self, issuer: &str, base_url: &str) {
        self.write().insert(
            issuer.trim_end_matches('/').to_owned(),
            base_url.trim_end_matches('/').to_owned(),
        );
    }

    /// Fetches the keys of `issuer` from the issuer URL again.
    pub fn remove(&self, issuer: &str) {
        self.write().remove(issuer.trim_end_matches('/'));
    }

    /// The base URL the keys of `issuer` are fetched from, when redirected.
    pub fn get(&self, issuer: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(issuer.trim_end_matches('/'))
            .cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, String>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Verifies tokens the way a cloud does: discover the issuer's JWKS over HTTPS, cache it, check
/// the token against it, and fetch it again when a token names a key id the cached JWKS lacks
/// (AWS, Entra and Google STS all do so after a key rotation). Only issuers in the trusted list
/// (or any, when the list is empty) are fetched, so a fake never dereferences an arbitrary URL
/// from a token. [`IssuerRedirects`] send the fetches for an issuer elsewhere.
pub struct JwksVerifier {
    client: reqwest::Client,
    redirects: IssuerRedirects,
    /// JWKS by (issuer, base URL fetched from): a changed redirect never reuses the old keys.
    cache: Mutex<HashMap<(String, String), Value>>,
}

impl JwksVerifier {
    pub fn new(client: reqwest::Client) -> Self {
        Self::with_redirects(client, IssuerRedirects::default())
    }

    /// A verifier that fetches keys where `redirects` say.
    pub fn with_redirects(client: reqwest::Client, redirects: IssuerRedirects) -> Self {
        Self {
            client,
            redirects,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The redirects this verifier follows (shared with whoever gave them).
    pub fn redirects(&self) -> &IssuerRedirects {
        &self.redirects
    }

    /// Verifies `token`, whose `iss` must be `expected_issuer` (exact match, as AWS and Entra do).
    pub async fn verify(&self, token: &str, expected_issuer: &str) -> Result<Value, VerifyError> {
        let iss = peek_claims(token)?
            .get("iss")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_default();
        if iss != expected_issuer {
            return Err(VerifyError::UntrustedIssuer(iss));
        }
        let jwks = self.jwks(&iss, false).await?;
        match verify_with_jwks(token, &jwks, &iss) {
            // The issuer may have rotated its keys since we cached them: refetch once.
            Err(VerifyError::UnknownKey(_)) => {
                let jwks = self.jwks(&iss, true).await?;
                verify_with_jwks(token, &jwks, &iss)
            }
            other => other,
        }
    }

    async fn jwks(&self, issuer: &str, refresh: bool) -> Result<Value, VerifyError> {
        let redirect = self.redirects.get(issuer);
        let key = (issuer.to_owned(), redirect.clone().unwrap_or_default());
        if !refresh && let Some(jwks) = self.lock().get(&key) {
            return Ok(jwks.clone());
        }
        let jwks = match (ClusterKeys::config_for(issuer), redirect) {
            (_, Some(base)) => self.jwks_from(issuer, &base).await?,
            (Some(config), None) => {
                get_through_cluster(
                    &config,
                    JWKS_PATH,
                    "application/jwk-set+json, application/json",
                )
                .await?
            }
            (None, None) => self.jwks_from(issuer, issuer).await?,
        };
        self.lock().insert(key, jwks.clone());
        Ok(jwks)
    }

    /// OpenID Connect discovery at `base` (the issuer's URL unless redirected), then its
    /// `jwks_uri`. The document must name `issuer`, as the clouds require.
    async fn jwks_from(&self, issuer: &str, base: &str) -> Result<Value, VerifyError> {
        let discovery_url = format!("{}{DISCOVERY_PATH}", base.trim_end_matches('/'));
        let discovery = self.get_json(&discovery_url).await?;
        let fail = |reason: String| VerifyError::Discovery {
            url: discovery_url.clone(),
            reason,
        };
        let named = discovery
            .get("issuer")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if named.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(fail(format!(
                "the document names issuer {named:?}, not the token's {issuer:?}"
            )));
        }
        let jwks_uri = discovery
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("no jwks_uri".into()))?
            .to_owned();
        // A redirect stands for everything under the issuer's URL (a CDN in front of the
        // bucket): a `jwks_uri` there is fetched from the base too.
        let issuer_prefix = issuer.trim_end_matches('/');
        let jwks_uri = match jwks_uri.strip_prefix(issuer_prefix) {
            Some(rest) if base.trim_end_matches('/') != issuer_prefix && rest.starts_with('/') => {
                format!("{}{rest}", base.trim_end_matches('/'))
            }
            _ => jwks_uri,
        };
        self.get_json(&jwks_uri).await
    }

    async fn get_json(&self, url: &str) -> Result<Value, VerifyError> {
        let fail = |reason: String| VerifyError::Discovery {
            url: url.to_owned(),
            reason,
        };
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        // Buckets serve what they were given; parse whatever the content type says.
        let bytes = response.bytes().await.map_err(|e| fail(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Value>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
const JWKS_PATH: &str = "/openid/v1/jwks";

/// Clusters whose issuer keys every [`JwksVerifier`] of the process reads through the API
/// server: (registration id, issuer, client configuration).
static CLUSTER_KEYS: Mutex<Vec<(u64, String, kube::Config)>> = Mutex::new(Vec::new());

/// While it lives, every [`JwksVerifier`] in the process reads the keys of one cluster's issuer
/// through that cluster's API server, with the kubeconfig's credentials (`GET
/// /openid/v1/jwks`, what Passport reads for `jwks: FromCluster`), instead of from the issuer's
/// URL. It is for a cluster the stack does not run (`PASSPORT_E2E_KUBECONFIG`), whose issuer may
/// be unreachable from here (kind's `https://kubernetes.default.svc`) or served under a CA the
/// fakes do not trust (they trust only the stack CA; a managed cluster's issuer uses the web
/// PKI). Tokens of every other issuer are verified as before. Process-wide because the fakes
/// build their verifiers themselves; it acts like a hosts entry for the fakes' network.
pub struct ClusterKeys {
    id: u64,
    issuer: String,
}

impl ClusterKeys {
    /// Reads the cluster's issuer from its API server (`GET /.well-known/openid-configuration`)
    /// and routes that issuer's keys through the API server until dropped.
    pub async fn register(config: kube::Config) -> anyhow::Result<Self> {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let discovery = get_through_cluster(&config, DISCOVERY_PATH, "application/json").await?;
        let issuer = discovery
            .get("issuer")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{} names no issuer: {discovery}",
                    cluster_url(&config, DISCOVERY_PATH)
                )
            })?
            .to_owned();
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock_cluster_keys().push((id, issuer.clone(), config));
        Ok(Self { id, issuer })
    }

    /// The issuer the cluster's API server names: its tokens' `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn config_for(issuer: &str) -> Option<kube::Config> {
        lock_cluster_keys()
            .iter()
            .rev()
            .find(|(_, registered, _)| registered == issuer)
            .map(|(_, _, config)| config.clone())
    }
}

impl Drop for ClusterKeys {
    fn drop(&mut self) {
        lock_cluster_keys().retain(|(id, _, _)| *id != self.id);
    }
}

fn lock_cluster_keys() -> std::sync::MutexGuard<'static, Vec<(u64, String, kube::Config)>> {
    CLUSTER_KEYS.lock().unwrap_or_else(|e| e.into_inner())
}

fn cluster_url(config: &kube::Config, path: &str) -> String {
    format!(
        "{}{path}",
        config.cluster_url.to_string().trim_end_matches('/')
    )
}

/// `GET path` on the API server as JSON (kube-apiserver serves the JWKS only as
/// `application/jwk-set+json`, hence `accept`).
async fn get_through_cluster(
    config: &kube::Config,
    path: &str,
    accept: &str,
) -> Result<Value, VerifyError> {
    let fail = |reason: String| VerifyError::Discovery {
        url: cluster_url(config, path),
        reason,
    };
    let client = kube::Client::try_from(config.clone()).map_err(|e| fail(e.to_string()))?;
    let request = axum::http::Request::get(path)
        .header(axum::http::header::ACCEPT, accept)
        .body(Vec::new())
        .map_err(|e| fail(e.to_string()))?;
    let text = client
        .request_text(request)
        .await
        .map_err(|e| fail(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| fail(e.to_string()))
}

/// A Kubernetes-like token issuer on HTTPS (stack CA) serving discovery and JWKS.
pub struct ServedIssuer {
    pub issuer: Issuer,
    _server: crate::serve::Server,
}

impl ServedIssuer {
    pub async fn start(ca: &crate::tls::Ca) -> anyhow::Result<Self> {
        // The issuer's documents name its URL, which is known only once the server listens.
        let docs: Arc<OnceLock<(Value, Value)>> = Arc::default();
        let router = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(
                    |State(d): State<Arc<OnceLock<(Value, Value)>>>| async move {
                        Json(d.get().map(|d| d.0.clone()).unwrap_or_default())
                    },
                ),
            )
            .route(
                "/openid/v1/jwks",
                get(
                    |State(d): State<Arc<OnceLock<(Value, Value)>>>| async move {
                        Json(d.get().map(|d| d.1.clone()).unwrap_or_default())
                    },
                ),
            )
            .with_state(docs.clone());
        let server =
            crate::serve::Server::https(router, ca.loopback_server_config().await?).await?;
        let issuer = Issuer::generate(&server.url())?;
        docs.set((issuer.discovery(), issuer.jwks()))
            .map_err(|_| anyhow::anyhow!("issuer documents set twice"))?;
        Ok(Self {
            issuer,
            _server: server,
        })
    }

    pub fn url(&self) -> &str {
        self.issuer.url()
    }

    /// `127.0.0.1:PORT`: the provider ARN suffix and the condition-key prefix.
    pub fn host_path(&self) -> &str {
        self.url().trim_start_matches("https://")
    }

    pub fn provider_arn(&self) -> String {
        format!(
            "arn:aws:iam::{}:oidc-provider/{}",
            crate::aws::ACCOUNT_ID,
            self.host_path()
        )
    }

    /// A service-account token shaped like kube-apiserver's, expiring `ttl` seconds from now.
    pub fn token(
        &self,
        namespace: &str,
        sa: &str,
        aud: &[&str],
        ttl: i64,
    ) -> anyhow::Result<String> {
        let now = jiff::Timestamp::now().as_second();
        self.issuer.sign(&json!({
            "iss": self.url(),
            "sub": format!("system:serviceaccount:{namespace}:{sa}"),
            "aud": aud,
            "exp": now + ttl,
            "iat": now - 30,
            "nbf": now - 30,
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": sa, "uid": "6c1c4ba8-4f1e-4a6b-9a7e-3d2f1e0c9b8a"},
                "pod": {"name": format!("{sa}-0"), "uid": "0f5c2a1e-7d3b-4c8e-a9f6-1b2c3d4e5f60"},
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn signed_tokens_verify_against_the_published_jwks() -> anyhow::Result<()> {
        let issuer = Issuer::generate("https://issuer.test")?;
        let token = issuer.sign(&json!({
            "iss": "https://issuer.test", "sub": "system:serviceaccount:ns:sa",
            "aud": ["sts.amazonaws.com"], "exp": now() + 600, "iat": now(),
        }))?;
        let claims = verify_with_jwks(&token, &issuer.jwks(), "https://issuer.test")?;
        assert_eq!(claims["sub"], "system:serviceaccount:ns:sa");
        Ok(())
    }

    #[test]
    fn tokens_from_another_key_expired_or_misissued_are_refused() -> anyhow::Result<()> {
        let issuer = Issuer::generate("https://issuer.test")?;
        let other = Issuer::generate("https://issuer.test")?;
        let claims = json!({ "iss": "https://issuer.test", "sub": "s", "exp": now() + 600 });
        let foreign = other.sign(&claims)?;
        assert!(matches!(
            verify_with_jwks(&foreign, &issuer.jwks(), "https://issuer.test"),
            Err(VerifyError::UnknownKey(_))
        ));
        let expired =
            issuer.sign(&json!({ "iss": "https://issuer.test", "sub": "s", "exp": now() - 60 }))?;
        assert!(verify_with_jwks(&expired, &issuer.jwks(), "https://issuer.test").is_err());
        let good = issuer.sign(&claims)?;
        assert!(verify_with_jwks(&good, &issuer.jwks(), "https://elsewhere.test").is_err());
        Ok(())
    }

    #[tokio::test]
    async fn a_clusters_keys_are_read_through_its_api_server_while_registered() -> anyhow::Result<()>
    {
        use k8s_openapi::api::{authentication::v1::TokenRequest, core::v1::ServiceAccount};
        let cluster =
            crate::apiserver::ApiServer::start(crate::apiserver::Config::default()).await?;
        let request: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": ["a"]}}))?;
        let token = kube::Api::<ServiceAccount>::namespaced(cluster.client().await?, "default")
            .create_token_request("default", &Default::default(), &request)
            .await?
            .status
            .and_then(|s| s.token)
            .ok_or_else(|| anyhow::anyhow!("no token"))?;
        // The fakes' client trusts another CA than the cluster's: its issuer is out of reach.
        let unreachable = || -> anyhow::Result<JwksVerifier> {
            Ok(JwksVerifier::new(crate::tls::Ca::new()?.client()?))
        };
        let issuer = cluster.url();
        assert!(matches!(
            unreachable()?.verify(&token, &issuer).await,
            Err(VerifyError::Discovery { .. })
        ));
        let keys =
            ClusterKeys::register(crate::cluster::kube_config(&cluster.kubeconfig_path()).await?)
                .await?;
        assert_eq!(keys.issuer(), issuer);
        let claims = unreachable()?.verify(&token, &issuer).await?;
        assert_eq!(claims["sub"], "system:serviceaccount:default:default");
        drop(keys);
        assert!(unreachable()?.verify(&token, &issuer).await.is_err());
        Ok(())
    }
}
