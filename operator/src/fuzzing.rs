//! Fuzz entry points for the operator's pure cores: `fuzz_desired` reads manifests as
//! `passport plan` does and runs both `desired` plans; `fuzz_trust_policy` parses and compares
//! IAM trust policies. `fuzz/` (cargo-fuzz) drives them; the tests below replay the committed
//! corpus. Not part of the API: they report a broken invariant by panicking.

use std::collections::BTreeMap;

use crate::cloud::aws::policy::{PolicyDocument, same_text};
use crate::cloud::{TrustGrant, aws};
use crate::controllers::access_policy::desired::{self as policy_desired, PolicyObject};
use crate::controllers::federated_trust::desired as trust_desired;
use crate::plan::{self, Manifests, Options};

/// A trust per cloud, for policies that name one the input does not define.
const TRUSTS: &str = "
kind: FederatedTrust
metadata: {name: aws-prod}
spec: {issuer: {url: 'https://oidc.example.com/c1'}, aws: {accountId: '111122223333'}, namespaceSelector: {}}
---
kind: FederatedTrust
metadata: {name: gcp-prod}
spec: {gcp: {projectId: p, projectNumber: '1', poolId: pool, providerId: prov, jwks: FromCluster}}
---
kind: FederatedTrust
metadata: {name: azure-prod}
spec: {azure: {tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47, allowedIdentities: ['*']}, namespaceSelector: {}}
---
kind: FederatedTrust
metadata: {name: vault}
spec: {oidc: {allowedAudiences: ['*']}, namespaceSelector: {matchLabels: {team: payments}}}
";

/// Reads `data` as a YAML stream of manifests (a stream `passport plan` refuses is fine), adds
/// `TRUSTS`, and plans it with and without an issuer: no panic, every refusal says why, the
/// plan renders, and each trust policy it would write parses back as itself.
pub fn fuzz_desired(data: &[u8]) {
    let mut manifests = Manifests::default();
    // What parsed before an error is kept: those documents are planned too.
    let _ = manifests.add(&String::from_utf8_lossy(data));
    manifests.trusts.truncate(16);
    manifests.policies.truncate(16);
    let fixed = manifests.add(TRUSTS);
    assert!(fixed.is_ok(), "{fixed:?}");
    for issuer in [Some("https://kubernetes.default.svc"), None] {
        let options = Options {
            cluster: "prod".to_owned(),
            issuer: issuer.map(str::to_owned),
            trust_policy_quota: 2048,
        };
        let planned = plan::build(&manifests, &options);
        let refusals = planned.trusts.iter().filter_map(|e| e.refused.as_ref());
        for refusal in refusals.chain(planned.policies.iter().filter_map(|e| e.refused.as_ref())) {
            assert!(!refusal.message.trim().is_empty(), "{refusal:?}");
        }
        assert!(!plan::render(&planned).is_empty());
        assert!(serde_json::to_string(&planned).is_ok());
        for entry in planned.policies.iter().filter_map(|e| e.plan.as_ref()) {
            if let PolicyObject::AwsRole(role) = &entry.object {
                let document = PolicyDocument::trust("Passport", &role.grant).to_json();
                fuzz_trust_policy(document.as_bytes());
            }
        }
    }
    // The trusts' own plans without the cluster's keys, which `plan` always has.
    let inputs = trust_desired::Inputs {
        cluster: "prod",
        discovered_issuer: None,
        cluster_jwks: None,
    };
    for trust in &manifests.trusts {
        if let Err(refusal) = trust_desired::build(trust, &inputs) {
            assert!(!refusal.message.trim().is_empty(), "{refusal:?}");
        }
    }
    // A policy planned against every trust, whatever it names, and a namespace with no labels.
    let labels = BTreeMap::new();
    for policy in manifests.policies.iter().take(4) {
        for trust in &manifests.trusts {
            let inputs = policy_desired::Inputs {
                cluster: "prod",
                trust: Some(trust),
                namespace_labels: &labels,
                discovered_issuer: Some("https://kubernetes.default.svc/"),
                trust_policy_quota: 2048,
            };
            if let Err(refusal) = policy_desired::build(policy, &inputs) {
                assert!(!refusal.message.trim().is_empty(), "{refusal:?}");
            }
        }
    }
}

/// Parses `data` as a trust policy (plain or percent-encoded, as IAM returns it). A parsed
/// document is the same as itself, as its own `to_json` read back, and as itself with a
/// Passport statement added and removed again.
pub fn fuzz_trust_policy(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    assert!(same_text(&text, &text), "same_text is reflexive");
    let Ok(document) = PolicyDocument::parse(&text) else {
        return;
    };
    assert!(document.same_as(&document), "same_as is reflexive");
    let json = document.to_json();
    let reread = match PolicyDocument::parse(&json) {
        Ok(reread) => reread,
        Err(error) => panic!("to_json does not read back: {error}: {json}"),
    };
    assert!(
        reread.same_as(&document) && document.same_as(&reread),
        "{json}"
    );
    assert!(same_text(&text, &json), "{json}");
    let sid = "PassportFuzz";
    if !document.has_statement(sid) {
        let grant = TrustGrant {
            provider_arn: aws::oidc_provider_arn("aws", "111122223333", "https://oidc.example.com"),
            issuer: "https://oidc.example.com".to_owned(),
            audience: "sts.amazonaws.com".to_owned(),
            subjects: vec!["system:serviceaccount:pay:api".to_owned()],
        };
        let edited = document.with_statement(sid, &grant);
        assert!(edited.has_statement(sid) && !edited.same_as(&document));
        assert!(edited.without_statement(sid).same_as(&document));
    }
}

#[cfg(test)]
mod tests {
    /// Every file of `fuzz/corpus/<target>` and `fuzz/regressions/<target>` through `entry`.
    fn replay(target: &str, entry: fn(&[u8])) {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz");
        let mut replayed = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(format!("{root}/{dir}/{target}")) else {
                continue;
            };
            for path in entries.flatten().map(|e| e.path()) {
                eprintln!("replaying {}", path.display());
                entry(&std::fs::read(&path).unwrap());
                replayed += 1;
            }
        }
        assert!(replayed > 0, "no corpus under {root}/corpus/{target}");
    }

    #[test]
    fn the_desired_fuzz_corpus_replays_without_a_panic() {
        replay("desired", super::fuzz_desired);
    }

    #[test]
    fn the_trust_policy_fuzz_corpus_replays_without_a_panic() {
        replay("trust_policy", super::fuzz_trust_policy);
    }
}
