//! `passport mutate`: the webhook's decision for one AdmissionReview, offline, from manifests
//! instead of the API server: the same `review` code the server runs, with the bindings looked
//! up in the given objects. `--explain` prints the decision trace in plain words instead.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::api::core::v1::Pod;
use passport_crds::matching;
use passport_webhook::{Bindings, BindingsSource, Config, Decision, PolicyBinding, Reviewed};

use crate::manifests::Manifests;

/// Bindings answered from manifests.
pub struct ManifestBindings<'a> {
    pub manifests: &'a Manifests,
    pub config: Arc<Config>,
    pub now: jiff::Timestamp,
}

impl BindingsSource for ManifestBindings<'_> {
    fn bindings(&self, namespace: &str, service_account: &str, _pod: &Pod) -> Bindings {
        let (labels, _) = self.manifests.namespace_labels(namespace);
        let mut bindings = Bindings::new(namespace, self.now, self.config.clone());
        bindings.policies = self
            .manifests
            .policies
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .map(|policy| {
                let trust = self
                    .manifests
                    .trust(&policy.spec.trust_ref.name)
                    .cloned()
                    .map(Arc::new);
                let admits = trust.as_ref().is_some_and(|t| {
                    matching::optional_selector_matches(t.spec.namespace_selector.as_ref(), &labels)
                });
                PolicyBinding {
                    policy: Arc::new(policy.clone()),
                    trust,
                    trust_admits_namespace: admits,
                }
            })
            .collect();
        bindings.service_account_annotations = self
            .manifests
            .service_accounts
            .iter()
            .find(|sa| {
                sa.metadata.namespace.as_deref() == Some(namespace)
                    && sa.metadata.name.as_deref() == Some(service_account)
            })
            .and_then(|sa| sa.metadata.annotations.clone())
            .unwrap_or_else(BTreeMap::new);
        bindings.env_sources = self
            .manifests
            .env_sources
            .get(namespace)
            .cloned()
            .unwrap_or_default();
        bindings
    }
}

/// The decision in plain words: the pod, then every step of the trace.
pub fn explain(reviewed: &Reviewed) -> String {
    let header = format!(
        "pod {}/{} (service account {}):",
        reviewed.namespace, reviewed.pod, reviewed.service_account
    );
    let body = match &reviewed.decision {
        Decision::Ignored { operation } => {
            format!("  {operation} requests are admitted untouched; only CREATE is mutated")
        }
        Decision::Admitted {
            applied,
            compat,
            trace,
            ..
        } => {
            let mut given: Vec<String> = applied.clone();
            given.extend(compat.iter().map(|mode| match mode.as_str() {
                "eks" => "the EKS webhook's annotations".to_owned(),
                "azure" => "the Azure webhook's label and annotations".to_owned(),
                other => other.to_owned(),
            }));
            let summary = if given.is_empty() {
                "admitted without credentials".to_owned()
            } else {
                format!("admitted with {}", given.join(", "))
            };
            format!("{trace}\n  => {summary}")
        }
        Decision::Denied(denial) => format!("{}\n  => denied: {}", denial.trace, denial.message),
    };
    format!("{header}\n{body}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
        "uid":"705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind":{"group":"","version":"v1","kind":"Pod"},
        "resource":{"group":"","version":"v1","resource":"pods"},
        "namespace":"payments","operation":"CREATE",
        "userInfo":{"username":"admin"},
        "object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"api-0","namespace":"payments"},
          "spec":{"serviceAccountName":"api","containers":[{"name":"app","image":"registry.example.com/payments/api:1"}]}}}}"#;

    fn manifests() -> Manifests {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        Manifests::read(&[
            root.join("config/samples"),
            root.join("operator/tests/fixtures/plan/namespaces.yaml"),
        ])
        .unwrap()
    }

    #[test]
    fn a_pod_of_a_bound_service_account_gets_the_samples_credentials() {
        let manifests = manifests();
        let source = ManifestBindings {
            manifests: &manifests,
            config: Arc::new(Config::new("prod")),
            now: jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        };
        let reviewed = passport_webhook::review(REVIEW.as_bytes(), &source).unwrap();
        let Decision::Admitted { applied, .. } = &reviewed.decision else {
            panic!("{:?}", reviewed.decision)
        };
        // The samples bind payments/api to an AWS role and a GCP service account.
        assert!(
            applied.iter().any(|p| p == "payments/s3-reader"),
            "{applied:?}"
        );
        let response = reviewed.to_wire().unwrap();
        assert_eq!(
            response["response"]["uid"],
            "705ab4f5-6393-11e8-b7cc-42010a800002"
        );
        assert_eq!(response["response"]["allowed"], true);
        let text = explain(&reviewed);
        assert!(
            text.starts_with("pod payments/api-0 (service account api):"),
            "{text}"
        );
        assert!(text.contains("s3-reader"), "{text}");
    }

    #[test]
    fn a_pod_of_an_unbound_service_account_gets_nothing_and_says_why() {
        let manifests = manifests();
        let source = ManifestBindings {
            manifests: &manifests,
            config: Arc::new(Config::new("prod")),
            now: jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        };
        let review = REVIEW.replace(
            "\"serviceAccountName\":\"api\"",
            "\"serviceAccountName\":\"stranger\"",
        );
        let reviewed = passport_webhook::review(review.as_bytes(), &source).unwrap();
        let Decision::Admitted { applied, .. } = &reviewed.decision else {
            panic!("{:?}", reviewed.decision)
        };
        assert!(applied.is_empty());
        let response = reviewed.to_wire().unwrap();
        assert!(response["response"].get("patch").is_none(), "{response}");
        assert!(explain(&reviewed).contains("admitted without credentials"));
    }

    #[test]
    fn keys_from_configmaps_and_secrets_in_the_objects_are_never_shadowed() {
        let mut manifests = manifests();
        manifests
            .add(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: aws-env, namespace: payments}\ndata: {AWS_ROLE_ARN: 'arn:aws:iam::1:role/own', LOG: x}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: payments}\nstringData: {AWS_REGION: eu-west-1}\n",
            )
            .unwrap();
        let sources = &manifests.env_sources["payments"];
        assert!(sources.config_maps["aws-env"].contains("AWS_ROLE_ARN"));
        assert!(sources.secrets["creds"].contains("AWS_REGION"));
        let source = ManifestBindings {
            manifests: &manifests,
            config: Arc::new(Config::new("prod")),
            now: jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        };
        let review = REVIEW.replace(
            r#""image":"registry.example.com/payments/api:1"}"#,
            r#""image":"registry.example.com/payments/api:1","envFrom":[{"configMapRef":{"name":"aws-env"}},{"secretRef":{"name":"creds"}}]}"#,
        );
        assert_ne!(review, REVIEW);
        let reviewed = passport_webhook::review(review.as_bytes(), &source).unwrap();
        let patch = String::from_utf8(reviewed.response.patch.unwrap()).unwrap();
        for name in ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_REGION"] {
            assert!(
                !patch.contains(&format!("\"name\":\"{name}\"")),
                "{name} comes from envFrom: {patch}"
            );
        }
        assert!(
            patch.contains("GOOGLE_APPLICATION_CREDENTIALS"),
            "the other cloud is still injected: {patch}"
        );
    }
}
