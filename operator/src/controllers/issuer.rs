//! The cluster's service-account token issuer: read from the API server
//! (`/.well-known/openid-configuration`, `/openid/v1/jwks`) when a trust does not name it, and
//! checked from outside the cluster the way a cloud would see it (`IssuerReachable`).

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use kube::Client;
use passport_crds::conditions::Reason;
use tokio::sync::Mutex;

/// What the API server says about its issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovered {
    pub issuer: String,
    pub jwks_uri: Option<String>,
    /// `/openid/v1/jwks` as served (the document uploaded for `jwks: FromCluster`).
    pub jwks: String,
}

/// Reads the issuer from the API server, at most once per `ttl`: policies of one trust share
/// one read.
pub struct ClusterIssuer {
    client: Client,
    ttl: Duration,
    cached: Mutex<Option<(Instant, Discovered)>>,
}

impl ClusterIssuer {
    pub fn new(client: Client, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            cached: Mutex::new(None),
        }
    }

    /// The issuer and JWKS, from the cache when fresh. An error says what could not be read.
    pub async fn get(&self) -> Result<Discovered, String> {
        let mut cached = self.cached.lock().await;
        if let Some((at, discovered)) = cached.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(discovered.clone());
        }
        let discovered = self.read().await?;
        *cached = Some((Instant::now(), discovered.clone()));
        Ok(discovered)
    }

    /// Forgets the cached read: the next `get` asks the API server again (after a check that
    /// found the issuer's keys differ from the cached ones, which a key rotation makes stale).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn read(&self) -> Result<Discovered, String> {
        // kube-apiserver serves the JWKS only as application/jwk-set+json (406 otherwise).
        let get = |path: &str, accept: &str| {
            http::Request::get(path)
                .header(http::header::ACCEPT, accept)
                .body(Vec::new())
                .map_err(|e| e.to_string())
        };
        let configuration: serde_json::Value = self
            .client
            .request(get(
                "/.well-known/openid-configuration",
                "application/json",
            )?)
            .await
            .map_err(|e| {
                format!("reading /.well-known/openid-configuration from the API server: {e}")
            })?;
        let issuer = configuration
            .get("issuer")
            .and_then(|v| v.as_str())
            .ok_or("the API server's /.well-known/openid-configuration names no issuer")?
            .to_owned();
        let jwks = self
            .client
            .request_text(get(
                "/openid/v1/jwks",
                "application/jwk-set+json, application/json",
            )?)
            .await
            .map_err(|e| format!("reading /openid/v1/jwks from the API server: {e}"))?;
        Ok(Discovered {
            issuer,
            jwks_uri: configuration
                .get("jwks_uri")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            jwks,
        })
    }
}

/// How a cloud would see the issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reachability {
    Reachable { jwks_uri: String },
    Unreachable { reason: Reason, message: String },
}

/// Fetches `issuer`'s discovery document and JWKS over HTTPS as a cloud would, and checks that
/// the keys include every key the cluster signs with (`cluster_jwks`).
pub async fn check(
    http: &reqwest::Client,
    issuer: &str,
    cluster_jwks: Option<&str>,
) -> Reachability {
    let unreachable = |reason, message: String| Reachability::Unreachable { reason, message };
    if !issuer.starts_with("https://") {
        return unreachable(
            Reason::IssuerNotPublic,
            format!(
                "issuer {issuer} is not an HTTPS URL; the clouds fetch keys only over HTTPS: \
                 publish the issuer at an https:// URL (see docs/clouds.md)"
            ),
        );
    }
    // OpenID Connect Discovery: the issuer without its trailing `/`, then the well-known path.
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let configuration: serde_json::Value = match fetch_json(http, &url).await {
        Ok(value) => value,
        Err(message) => return unreachable(Reason::IssuerUnreachable, message),
    };
    let served = configuration.get("issuer").and_then(|v| v.as_str());
    if served != Some(issuer) {
        return unreachable(
            Reason::IssuerUnreachable,
            format!(
                "{url} names issuer {}, not {issuer}: every token exchange would fail; make the \
                 API server's --service-account-issuer and the published document agree",
                served.unwrap_or("<none>")
            ),
        );
    }
    let Some(jwks_uri) = configuration.get("jwks_uri").and_then(|v| v.as_str()) else {
        return unreachable(Reason::IssuerUnreachable, format!("{url} has no jwks_uri"));
    };
    let published = match fetch_json(http, jwks_uri).await {
        Ok(value) => value,
        Err(message) => return unreachable(Reason::IssuerUnreachable, message),
    };
    if let Some(cluster) = cluster_jwks.and_then(|j| serde_json::from_str(j).ok()) {
        let missing: Vec<String> = key_ids(&cluster)
            .difference(&key_ids(&published))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return unreachable(
                Reason::IssuerUnreachable,
                format!(
                    "{jwks_uri} lacks the cluster's signing keys {}: tokens signed with them \
                     would be refused; publish the cluster's current /openid/v1/jwks",
                    missing.join(", ")
                ),
            );
        }
    }
    Reachability::Reachable {
        jwks_uri: jwks_uri.to_owned(),
    }
}

async fn fetch_json(http: &reqwest::Client, url: &str) -> Result<serde_json::Value, String> {
    let response = http
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| {
            format!(
                "a cloud could not fetch {url} ({}); publish the issuer where the clouds can read \
                 it without credentials (docs/clouds.md)",
                error_chain(&e)
            )
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!(
            "fetching {url}: HTTP {status}; the clouds need it readable without credentials"
        ));
    }
    response
        .json()
        .await
        .map_err(|e| format!("{url} is not JSON: {e}"))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The `kid`s of a JWKS (or, for keys without one, their modulus).
fn key_ids(jwks: &serde_json::Value) -> BTreeSet<String> {
    jwks.get("keys")
        .and_then(|k| k.as_array())
        .into_iter()
        .flatten()
        .filter_map(|key| {
            key.get("kid")
                .or_else(|| key.get("n"))
                .or_else(|| key.get("x"))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_plain_http_issuer_is_not_public() {
        let http = reqwest::Client::new();
        let Reachability::Unreachable { reason, message } =
            check(&http, "http://issuer.local", None).await
        else {
            panic!("http is never reachable for a cloud");
        };
        assert_eq!(reason, Reason::IssuerNotPublic);
        assert!(message.contains("HTTPS"), "{message}");
    }

    #[tokio::test]
    async fn an_issuer_that_does_not_answer_is_unreachable() {
        let http = reqwest::Client::new();
        // Port 1 on loopback refuses connections.
        let Reachability::Unreachable { reason, message } =
            check(&http, "https://127.0.0.1:1", None).await
        else {
            panic!("nothing listens on port 1");
        };
        assert_eq!(reason, Reason::IssuerUnreachable);
        assert!(message.contains("openid-configuration"), "{message}");
    }

    #[test]
    fn key_ids_come_from_kid_or_the_key_itself() {
        let jwks = serde_json::json!({"keys": [{"kid": "a"}, {"n": "modulus"}, {"kty": "RSA"}]});
        assert_eq!(
            key_ids(&jwks),
            BTreeSet::from(["a".to_owned(), "modulus".to_owned()])
        );
    }
}
