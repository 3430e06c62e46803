//! What Passport publishes for `spec.issuer.publish`, worked out from the cluster's issuer and
//! keys, what the bucket holds now, and the previous status. Pure: no IO and no clock of its
//! own, so a rotation can be tested minute by minute.
//!
//! Key rotation: a key the cluster no longer serves stays in the published JWKS until every
//! token signed with it has expired (the overlap: the longest token lifetime of the trust's
//! policies plus a margin), counted from when Passport first saw the cluster without it. The
//! bucket itself is the memory of the old keys' bodies, and `status.publication.retiringKeys`
//! of when each started to retire, so an operator restart neither drops a key early nor keeps
//! one for ever (a lost status only restarts the clock: a longer overlap, never a shorter one).

use std::time::Duration;

use jiff::Timestamp;
use passport_crds::{
    conditions::{ConditionType, Reason, State, Status},
    federated_trust::{PublicationStatus, RetiringKey},
};
use serde_json::{Value, json};

/// The two objects of an issuer, by their path under the issuer URL.
pub const DISCOVERY_PATH: &str = ".well-known/openid-configuration";
pub const JWKS_PATH: &str = "openid/v1/jwks";
/// `Content-Type` of the discovery document, and of the JWKS (what kube-apiserver serves).
pub const DISCOVERY_CONTENT_TYPE: &str = "application/json";
pub const JWKS_CONTENT_TYPE: &str = "application/jwk-set+json";
/// `Cache-Control` of both: short enough that a CDN or a cloud picks up a new key within
/// minutes, long enough that the clouds' fetches are cheap. The overlap keeps old keys
/// published far longer than this.
pub const CACHE_CONTROL: &str = "public, max-age=300";

/// What to write, and what to report.
#[derive(Clone, Debug, PartialEq)]
pub struct Publication {
    /// The discovery document and the JWKS, serialised the same way every time, so that an
    /// unchanged publication compares equal byte for byte and makes no write.
    pub discovery: Vec<u8>,
    pub jwks: Vec<u8>,
    pub status: PublicationStatus,
    /// When the next retiring key is dropped (the reconcile comes back then).
    pub next_retirement: Option<Timestamp>,
}

/// The published discovery document: the cluster's issuer, the JWKS at `public_url`, and the
/// signing algorithms of the keys.
pub fn discovery(issuer: &str, public_url: &str, jwks: &Value) -> Value {
    let mut algorithms: Vec<&str> = keys(jwks)
        .iter()
        .map(|k| k.get("alg").and_then(Value::as_str).unwrap_or("RS256"))
        .collect();
    if algorithms.is_empty() {
        algorithms.push("RS256");
    }
    algorithms.sort_unstable();
    algorithms.dedup();
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{public_url}/{JWKS_PATH}"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algorithms,
    })
}

fn keys(jwks: &Value) -> Vec<&Value> {
    jwks.get("keys")
        .and_then(Value::as_array)
        .map(|keys| keys.iter().collect())
        .unwrap_or_default()
}

fn kid(key: &Value) -> Option<&str> {
    key.get("kid").and_then(Value::as_str)
}

/// The publication for the cluster's `cluster_jwks`, given the bucket's current JWKS (None when
/// there is none yet, or it is not JSON), the previous status, the time and the overlap.
pub fn plan(
    issuer: &str,
    public_url: &str,
    cluster_jwks: &Value,
    published_jwks: Option<&Value>,
    previous: Option<&PublicationStatus>,
    now: Timestamp,
    overlap: Duration,
) -> Publication {
    let current = keys(cluster_jwks);
    let current_kids: Vec<&str> = current.iter().filter_map(|k| kid(k)).collect();
    let mut published: Vec<Value> = current.iter().map(|k| (*k).clone()).collect();
    let mut retiring = Vec::new();
    let overlap = jiff::SignedDuration::try_from(overlap).unwrap_or(jiff::SignedDuration::MAX);
    for old in published_jwks.map(keys).unwrap_or_default() {
        // A key without a kid cannot be told apart from the cluster's: it goes.
        let Some(old_kid) = kid(old) else { continue };
        if current_kids.contains(&old_kid)
            || retiring.iter().any(|r: &RetiringKey| r.kid == old_kid)
        {
            continue;
        }
        let since = previous
            .and_then(|p| p.retiring_keys.iter().find(|r| r.kid == old_kid))
            .and_then(|r| r.since.parse::<Timestamp>().ok())
            .filter(|since| *since <= now)
            .unwrap_or(now);
        let until = since.saturating_add(overlap).unwrap_or(Timestamp::MAX);
        if now < until {
            published.push(old.clone());
            retiring.push(RetiringKey {
                kid: old_kid.to_owned(),
                since: since.to_string(),
                until: until.to_string(),
            });
        }
    }
    let next_retirement = retiring
        .iter()
        .filter_map(|r| r.until.parse::<Timestamp>().ok())
        .min();
    let jwks = json!({ "keys": published });
    let discovery = discovery(issuer, public_url, &jwks);
    Publication {
        discovery: serde_json::to_vec(&discovery).unwrap_or_default(),
        jwks: serde_json::to_vec(&jwks).unwrap_or_default(),
        status: PublicationStatus {
            url: Some(public_url.to_owned()),
            keys: current_kids.iter().map(|k| (*k).to_owned()).collect(),
            retiring_keys: retiring,
        },
        next_retirement,
    }
}

/// The overlap for a trust: the longest token lifetime of its policies (`None` when it has
/// none: Kubernetes' default projected token lifetime, one hour) plus `margin`.
pub fn overlap(longest_token_seconds: Option<i64>, margin: Duration) -> Duration {
    let longest = longest_token_seconds.unwrap_or(3600).max(600);
    Duration::from_secs(u64::try_from(longest).unwrap_or(3600)) + margin
}

/// The `IssuerPublished` condition of a publication at `public_url` for the cluster's `issuer`,
/// with `status` the one just worked out (`plan`), and the Normal Events of a rotation that
/// starts or ends (`was_rotating`: the previous status had retiring keys).
pub fn condition(
    public_url: &str,
    issuer: &str,
    status: &PublicationStatus,
    was_rotating: bool,
) -> (State, Vec<(&'static str, String)>) {
    let state = |status: Status, reason: Reason, message: String| {
        State::new(ConditionType::IssuerPublished, status, reason, message)
    };
    if public_url != issuer {
        let message = format!(
            "the documents are published at {public_url}, but the cluster's issuer \
             (--service-account-issuer) is {issuer}: every token names that issuer, so no cloud \
             would look here. Set --service-account-issuer={public_url} and \
             --service-account-jwks-uri={public_url}/{JWKS_PATH} on the API server, or set \
             spec.issuer.publish.publicUrl to the URL that serves this bucket"
        );
        return (
            state(Status::False, Reason::IssuerMismatch, message),
            Vec::new(),
        );
    }
    let keys = status.keys.join(", ");
    if status.retiring_keys.is_empty() {
        let events = if was_rotating {
            vec![(
                "RotationComplete",
                "the keys the cluster dropped are no longer published".to_owned(),
            )]
        } else {
            Vec::new()
        };
        let message =
            format!("{public_url} serves the cluster's discovery document and keys ({keys})");
        return (state(Status::True, Reason::Published, message), events);
    }
    let retiring = status
        .retiring_keys
        .iter()
        .map(|r| format!("{} until {}", r.kid, r.until))
        .collect::<Vec<_>>()
        .join(", ");
    let events = if was_rotating {
        Vec::new()
    } else {
        vec![(
            "RotationInProgress",
            format!(
                "the cluster dropped keys; they stay published until the tokens signed with \
                 them expire: {retiring}"
            ),
        )]
    };
    let message = format!(
        "{public_url} serves the cluster's keys ({keys}) and, until tokens signed with them \
         expire, the keys it dropped: {retiring}"
    );
    (
        state(Status::True, Reason::RotationInProgress, message),
        events,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwks(kids: &[&str]) -> Value {
        json!({ "keys": kids.iter().map(|k| json!({"kty": "RSA", "kid": k, "alg": "RS256", "n": format!("n-{k}"), "e": "AQAB"})).collect::<Vec<_>>() })
    }

    fn published_kids(publication: &Publication) -> Vec<String> {
        let jwks: Value = serde_json::from_slice(&publication.jwks).unwrap();
        keys(&jwks)
            .iter()
            .map(|k| kid(k).unwrap().to_owned())
            .collect()
    }

    const ISSUER: &str = "https://oidc.example.com/prod";

    #[test]
    fn the_discovery_document_names_the_issuer_and_the_published_jwks() {
        let p = plan(
            ISSUER,
            ISSUER,
            &jwks(&["a"]),
            None,
            None,
            Timestamp::UNIX_EPOCH,
            Duration::from_secs(60),
        );
        let doc: Value = serde_json::from_slice(&p.discovery).unwrap();
        assert_eq!(doc["issuer"], ISSUER);
        assert_eq!(doc["jwks_uri"], format!("{ISSUER}/openid/v1/jwks"));
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            json!(["RS256"])
        );
        assert_eq!(published_kids(&p), ["a"]);
        assert_eq!(p.status.keys, ["a"]);
        assert!(p.status.retiring_keys.is_empty() && p.next_retirement.is_none());
        // The same inputs give the same bytes: an unchanged publication writes nothing.
        let again = plan(
            ISSUER,
            ISSUER,
            &jwks(&["a"]),
            Some(&serde_json::from_slice(&p.jwks).unwrap()),
            Some(&p.status),
            Timestamp::UNIX_EPOCH,
            Duration::from_secs(60),
        );
        assert_eq!(again, p);
    }

    #[test]
    fn a_dropped_key_stays_published_through_the_overlap_then_goes() {
        let overlap = Duration::from_secs(3600);
        let t0: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let before = plan(ISSUER, ISSUER, &jwks(&["old"]), None, None, t0, overlap);
        let published = |p: &Publication| -> Value { serde_json::from_slice(&p.jwks).unwrap() };

        // The cluster rotates: only the new key. Both are published, the old one retiring.
        let t1 = t0 + jiff::SignedDuration::from_mins(5);
        let rotating = plan(
            ISSUER,
            ISSUER,
            &jwks(&["new"]),
            Some(&published(&before)),
            Some(&before.status),
            t1,
            overlap,
        );
        assert_eq!(published_kids(&rotating), ["new", "old"]);
        assert_eq!(rotating.status.keys, ["new"]);
        let retiring = &rotating.status.retiring_keys[0];
        assert_eq!(retiring.kid, "old");
        assert_eq!(retiring.since, t1.to_string());
        let until = t1 + jiff::SignedDuration::from_hours(1);
        assert_eq!(retiring.until, until.to_string());
        assert_eq!(rotating.next_retirement, Some(until));

        // Halfway, and after a restart that kept the status: still both, the same deadline.
        let t2 = t1 + jiff::SignedDuration::from_mins(30);
        let halfway = plan(
            ISSUER,
            ISSUER,
            &jwks(&["new"]),
            Some(&published(&rotating)),
            Some(&rotating.status),
            t2,
            overlap,
        );
        assert_eq!(published_kids(&halfway), ["new", "old"]);
        assert_eq!(halfway.status.retiring_keys, rotating.status.retiring_keys);

        // A lost status restarts the clock: the key is kept longer, never dropped early.
        let lost = plan(
            ISSUER,
            ISSUER,
            &jwks(&["new"]),
            Some(&published(&rotating)),
            None,
            t2,
            overlap,
        );
        assert_eq!(lost.status.retiring_keys[0].since, t2.to_string());

        // At the deadline the old key goes.
        let done = plan(
            ISSUER,
            ISSUER,
            &jwks(&["new"]),
            Some(&published(&halfway)),
            Some(&halfway.status),
            until,
            overlap,
        );
        assert_eq!(published_kids(&done), ["new"]);
        assert!(done.status.retiring_keys.is_empty() && done.next_retirement.is_none());
    }

    #[test]
    fn a_key_the_cluster_serves_again_stops_retiring() {
        let overlap = Duration::from_secs(600);
        let t0 = Timestamp::UNIX_EPOCH;
        let two = plan(ISSUER, ISSUER, &jwks(&["a", "b"]), None, None, t0, overlap);
        let jwks_two: Value = serde_json::from_slice(&two.jwks).unwrap();
        let one = plan(
            ISSUER,
            ISSUER,
            &jwks(&["a"]),
            Some(&jwks_two),
            Some(&two.status),
            t0,
            overlap,
        );
        assert_eq!(one.status.retiring_keys.len(), 1);
        let back = plan(
            ISSUER,
            ISSUER,
            &jwks(&["a", "b"]),
            Some(&serde_json::from_slice(&one.jwks).unwrap()),
            Some(&one.status),
            t0,
            overlap,
        );
        assert!(back.status.retiring_keys.is_empty());
        assert_eq!(published_kids(&back), ["a", "b"]);
    }

    #[test]
    fn the_overlap_is_the_longest_token_plus_the_margin() {
        let margin = Duration::from_secs(600);
        assert_eq!(overlap(Some(86_400), margin), Duration::from_secs(87_000));
        assert_eq!(overlap(None, margin), Duration::from_secs(4_200));
        // Kubernetes issues no projected token shorter than 10 minutes.
        assert_eq!(overlap(Some(60), margin), Duration::from_secs(1_200));
    }

    #[test]
    fn the_condition_names_a_mismatch_a_rotation_and_its_end() {
        let status = |keys: &[&str], retiring: &[&str]| PublicationStatus {
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            retiring_keys: retiring
                .iter()
                .map(|k| RetiringKey {
                    kid: (*k).to_owned(),
                    since: "2026-12-07T10:00:00Z".to_owned(),
                    until: "2026-12-07T12:00:00Z".to_owned(),
                })
                .collect(),
            ..PublicationStatus::default()
        };
        let single_spaced = |text: &str| assert!(!text.contains("  "), "{text}");

        let (mismatch, events) = condition(
            "https://bucket.example",
            ISSUER,
            &status(&["a"], &[]),
            false,
        );
        assert_eq!(
            (mismatch.status, mismatch.reason),
            (Status::False, Reason::IssuerMismatch)
        );
        assert!(
            mismatch.message.contains(
                "Set --service-account-issuer=https://bucket.example and \
                 --service-account-jwks-uri=https://bucket.example/openid/v1/jwks"
            ),
            "{}",
            mismatch.message
        );
        single_spaced(&mismatch.message);
        assert!(events.is_empty());

        let (rotating, events) = condition(ISSUER, ISSUER, &status(&["b"], &["a"]), false);
        assert_eq!(
            (rotating.status, rotating.reason),
            (Status::True, Reason::RotationInProgress)
        );
        assert!(
            rotating.message.contains("keys (b)"),
            "{}",
            rotating.message
        );
        assert!(rotating.message.ends_with("a until 2026-12-07T12:00:00Z"));
        single_spaced(&rotating.message);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].0, "RotationInProgress");
        single_spaced(&events[0].1);
        // Still rotating: no second Event.
        assert!(
            condition(ISSUER, ISSUER, &status(&["b"], &["a"]), true)
                .1
                .is_empty()
        );

        let (done, events) = condition(ISSUER, ISSUER, &status(&["b"], &[]), true);
        assert_eq!(
            (done.status, done.reason),
            (Status::True, Reason::Published)
        );
        assert_eq!(
            done.message,
            format!("{ISSUER} serves the cluster's discovery document and keys (b)")
        );
        assert_eq!(
            events.iter().map(|e| e.0).collect::<Vec<_>>(),
            ["RotationComplete"]
        );
        assert!(
            condition(ISSUER, ISSUER, &status(&["b"], &[]), false)
                .1
                .is_empty()
        );
    }
}
