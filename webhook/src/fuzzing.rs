//! Fuzz entry point for admission: `fuzz_admission` reviews arbitrary bytes as the server does
//! and checks the response's invariants. `fuzz/` (cargo-fuzz) drives it; the tests below replay
//! the committed corpus. Not part of the API: it reports a broken invariant by panicking.

use std::sync::{Arc, OnceLock};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt as _;
use passport_crds::{AccessPolicy, FederatedTrust, keys};

use crate::{
    Admission, Bindings, Config, Decision, PolicyBinding, Request, memo::names_a_token_volume,
    mutate, review,
};

/// A policy per cloud for service accounts `api` and `default`, one more skipped on conditions,
/// one refusing `batch` pods on conditions, and one (`outside`) whose trust leaves the
/// namespace out.
const POLICIES: &str = r#"[
  {"metadata": {"name": "s3"}, "spec": {"trustRef": {"name": "aws"}, "serviceAccounts": ["api", "default"],
    "aws": {"roleName": "s3", "region": "eu-west-1"}}},
  {"metadata": {"name": "gcs"}, "spec": {"trustRef": {"name": "gcp"}, "serviceAccounts": ["api", "default"],
    "gcp": {"serviceAccount": "r@p.iam.gserviceaccount.com"}}},
  {"metadata": {"name": "blob"}, "spec": {"trustRef": {"name": "azure"}, "serviceAccounts": ["api", "default"],
    "azure": {"clientId": "11111111-2222-3333-4444-555555555555",
      "identity": "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i"}}},
  {"metadata": {"name": "vault"}, "spec": {"trustRef": {"name": "oidc"}, "serviceAccounts": ["api", "default"],
    "oidc": {"audience": "vault"}}},
  {"metadata": {"name": "night"}, "spec": {"trustRef": {"name": "oidc"}, "serviceAccounts": ["api", "default"],
    "oidc": {"audience": "night"}, "conditions": {
      "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["batch"]}]},
      "schedule": {"timeZone": "Europe/Berlin", "windows": [{"days": ["Tue"], "start": "22:00", "end": "06:00"}]}}}},
  {"metadata": {"name": "pinned"}, "spec": {"trustRef": {"name": "aws"}, "serviceAccounts": ["batch"],
    "aws": {}, "enforcement": "Reject",
    "conditions": {"images": {"allowedPrefixes": ["registry.example.com/"], "requireDigest": true}}}},
  {"metadata": {"name": "outside"}, "spec": {"trustRef": {"name": "oidc"}, "serviceAccounts": ["api"],
    "oidc": {"audience": "other"}}}
]"#;

const TRUSTS: &str = r#"[
  {"metadata": {"name": "aws"}, "spec": {"aws": {"accountId": "111122223333"}}},
  {"metadata": {"name": "gcp"}, "spec": {"gcp": {"projectId": "p", "projectNumber": "1", "poolId": "pool", "providerId": "prov"}}},
  {"metadata": {"name": "azure"}, "spec": {"azure": {"tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47"}}},
  {"metadata": {"name": "oidc"}, "spec": {"oidc": {"allowedAudiences": ["*"]}}}
]"#;

/// `POLICIES` in namespace `payments` with their trusts, and the EKS and Azure annotations on
/// the service account.
fn build_bindings() -> Bindings {
    let now = jiff::Timestamp::constant(1_796_119_200, 0); // 2026-12-01T10:00:00Z, a Tuesday
    let mut config = Config::new("prod");
    config.compat.azure_tenant_id = Some("72f988bf-86f1-41af-91ab-2d7cd011db47".to_owned());
    let mut bindings = Bindings::new("payments", now, Arc::new(config));
    let trusts: Vec<FederatedTrust> = decode(serde_json::from_str(TRUSTS));
    let policies: Vec<AccessPolicy> = decode(serde_json::from_str(POLICIES));
    for mut policy in policies {
        policy.metadata.namespace = Some("payments".to_owned());
        let trust_name = &policy.spec.trust_ref.name;
        bindings.policies.push(PolicyBinding {
            trust: trusts
                .iter()
                .find(|t| t.name_any() == *trust_name)
                .cloned()
                .map(Arc::new),
            trust_admits_namespace: policy.name_any() != "outside",
            policy: Arc::new(policy),
        });
    }
    let annotations = [
        (keys::eks::ROLE_ARN, "arn:aws:iam::111122223333:role/legacy"),
        (
            keys::azure_wi::CLIENT_ID,
            "11111111-2222-3333-4444-555555555555",
        ),
    ];
    for (key, value) in annotations {
        let (key, value) = (key.to_owned(), value.to_owned());
        bindings.service_account_annotations.insert(key, value);
    }
    bindings
}

#[allow(clippy::expect_used)] // the fixtures above are constants: a failure is a bug here
fn decode<T>(result: serde_json::Result<T>) -> T {
    result.expect("a valid fixture")
}

/// Reviews `data` with the fixed bindings. A body `review` rejects is fine; an accepted one must
/// echo its UID and serialise; an admitted pod's patch must apply both to the pod as `review`
/// read it and to the request's raw object (as the API server applies it), and mutating the
/// patched pod again must change nothing. `review` reads only the parts of the pod `mutate`
/// reads (`pod_in`), so it accepts a body whose other members k8s-openapi would refuse (a
/// container's `ports` that is not a list): the API server validated the pod, and Passport
/// does not judge what it does not read.
pub fn fuzz_admission(data: &[u8]) {
    static BINDINGS: OnceLock<Bindings> = OnceLock::new();
    let fixed = BINDINGS.get_or_init(build_bindings);
    let for_namespace = |ns: &str| Bindings {
        namespace: ns.to_owned(),
        ..fixed.clone()
    };
    // Read in two steps (the object first left as text, as the server reads it to find a kept
    // decision), the body is accepted or refused as in one.
    let stepwise = Request::read(data).and_then(Request::admission);
    let masked = matches!(&stepwise, Ok((_, Some(key))) if key.masked());
    let Ok(reviewed) = review(data, &|ns: &str, _: &str, _: &Pod| for_namespace(ns)) else {
        assert!(
            stepwise.is_err(),
            "read in two steps, a refused body is accepted"
        );
        return;
    };
    let Ok(admission) = Admission::parse(data) else {
        panic!("review accepted a body its own parse refuses")
    };
    let Ok((stepwise, _)) = stepwise else {
        panic!("read in two steps, an accepted body is refused")
    };
    let bindings = stepwise.subject().map_or_else(
        || for_namespace(""),
        |(namespace, _)| for_namespace(namespace),
    );
    let Ok(again) = stepwise.decide(&bindings) else {
        panic!("read in two steps, the body gets no answer")
    };
    // From its memo key, the pod is the same but for its token volume's name: a decision that
    // does not name that volume is the same (the server decides again from the body one that
    // does).
    if !(masked && names_a_token_volume(&again)) {
        assert_eq!(
            again.response, reviewed.response,
            "read in two steps, the body gets another answer"
        );
    }
    assert!(reviewed.to_wire().is_ok(), "the response serialises");
    let response = &reviewed.response;
    // The raw body, when serde_json reads it as a value (it skips unknown members without
    // checking their UTF-8, so the body may not even be one).
    let raw: Option<serde_json::Value> = serde_json::from_slice(data).ok();
    if let Some(uid) = raw.as_ref().and_then(|v| v.pointer("/request/uid")) {
        assert_eq!(
            uid.as_str(),
            Some(response.uid.as_str()),
            "the UID is echoed"
        );
    }
    let admitted = match &reviewed.decision {
        Decision::Ignored { .. } => {
            assert!(response.allowed && response.patch.is_none());
            return;
        }
        Decision::Denied(denial) => {
            assert!(
                !response.allowed && !denial.message.is_empty(),
                "{denial:?}"
            );
            return;
        }
        Decision::Admitted { .. } => admission.into_pod(),
    };
    let Some(pod) = admitted.filter(|_| response.allowed) else {
        panic!("an admitted CREATE without an object, or not allowed")
    };
    let patch: json_patch::Patch = match &response.patch {
        Some(bytes) => serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("patch: {e}")),
        None => json_patch::Patch(Vec::new()),
    };
    // The raw object as the API server sends it: always with `metadata` (it sets the namespace
    // before admission), where the typed pod serialises an empty one. Both are in
    // fuzz/regressions/admission.
    let mut raw = raw
        .and_then(|v| v.pointer("/request/object").cloned())
        .filter(|object| object.get("metadata").is_some_and(|m| m.is_object()));
    let mut typed = serde_json::to_value(&pod).unwrap_or_else(|e| panic!("pod: {e}"));
    for object in std::iter::once(&mut typed).chain(raw.as_mut()) {
        if let Err(error) = json_patch::patch(object, &patch) {
            panic!("the patch does not apply: {error}: {patch:?}");
        }
    }
    let patched: Pod = serde_json::from_value(typed).unwrap_or_else(|e| panic!("patched: {e}"));
    let again = mutate(&patched, &for_namespace(&reviewed.namespace)).map(|m| m.pod);
    assert_eq!(
        again.as_ref(),
        Ok(&patched),
        "mutating the patched pod changes nothing"
    );
}

#[cfg(test)]
mod tests {
    /// Every file of `fuzz/corpus/admission` and `fuzz/regressions/admission` goes through the
    /// entry point: the corpus is the regression suite of the fuzzer's findings.
    #[test]
    fn the_admission_fuzz_corpus_replays_without_a_panic() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz");
        let mut replayed = 0;
        for dir in ["corpus/admission", "regressions/admission"] {
            let Ok(entries) = std::fs::read_dir(format!("{root}/{dir}")) else {
                continue;
            };
            for path in entries.flatten().map(|e| e.path()) {
                eprintln!("replaying {}", path.display());
                super::fuzz_admission(&std::fs::read(&path).unwrap());
                replayed += 1;
            }
        }
        assert!(replayed > 0, "no corpus under {root}/corpus/admission");
    }
}
