//! Properties of `mutate` over generated pods and bindings: mutating twice equals mutating
//! once (reinvocation), and the JSON patch `review` sends is `json_patch::diff` of the whole
//! pods and applies to its input, for fresh pods and for reinvocations of mutated ones (the
//! pods carry fields the review skips unparsed, which must change nothing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{PolicyFixture, World, labels};
use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar, Pod, PodSpec, Toleration,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use passport_crds::AccessPolicy;
use passport_webhook::{Bindings, mutate, review};
use proptest::prelude::*;

const ENV_NAMES: &[&str] = &[
    "AWS_ROLE_ARN",
    "AWS_REGION",
    "AZURE_CLIENT_ID",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "PASSPORT_OIDC_TOKEN_FILE",
    "LOG_LEVEL",
];

fn container(name: String, env: Vec<usize>, from_cm: bool, eks_mount: bool) -> Container {
    Container {
        name,
        image: Some("registry.example.com/payments/app:1".to_owned()),
        env: (!env.is_empty()).then(|| {
            env.iter()
                .map(|i| EnvVar {
                    name: ENV_NAMES[*i].to_owned(),
                    value: Some("set".to_owned()),
                    value_from: None,
                })
                .collect()
        }),
        env_from: from_cm.then(|| {
            vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "aws-settings".to_owned(),
                    optional: None,
                }),
                ..EnvFromSource::default()
            }]
        }),
        volume_mounts: eks_mount.then(|| {
            vec![VolumeMount {
                name: "aws-iam-token".to_owned(),
                mount_path: "/var/run/secrets/eks.amazonaws.com/serviceaccount".to_owned(),
                ..VolumeMount::default()
            }]
        }),
        // Fields `mutate` neither reads nor writes, which the review skips unparsed: the
        // review's patch must still be that of the whole pods.
        ports: Some(vec![ContainerPort {
            container_port: 8080,
            name: Some("http".to_owned()),
            ..ContainerPort::default()
        }]),
        termination_message_path: Some("/dev/termination-log".to_owned()),
        ..Container::default()
    }
}

prop_compose! {
    fn containers(prefix: &'static str, max: usize)(
        specs in proptest::collection::vec(
            (proptest::collection::vec(0..ENV_NAMES.len(), 0..3), any::<bool>(), proptest::bool::weighted(0.2), proptest::bool::weighted(0.3)),
            0..max)
    ) -> Vec<(Container, bool)> {
        specs.into_iter().enumerate().map(|(i, (mut env, cm, eks, sidecar))| {
            env.sort_unstable();
            env.dedup();
            (container(format!("{prefix}{i}"), env, cm, eks), sidecar)
        }).collect()
    }
}

prop_compose! {
    fn pods()(
        main in containers("c", 4).prop_filter("a pod has a container", |c| !c.is_empty()),
        init in containers("i", 3),
        skip in proptest::option::of(0..4usize),
        web in any::<bool>(),
        azure_label in any::<bool>(),
        volume in any::<bool>(),
    ) -> Pod {
        let mut annotations = BTreeMap::new();
        if let Some(i) = skip {
            annotations.insert("passport.dev/skip-containers".to_owned(), format!("c{i},i{i}"));
        }
        let mut pod_labels = BTreeMap::new();
        if web { pod_labels.insert("app".to_owned(), "web".to_owned()); }
        if azure_label { pod_labels.insert("azure.workload.identity/use".to_owned(), "true".to_owned()); }
        let mut pod = Pod::default();
        pod.metadata.name = Some("p".to_owned());
        pod.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
        pod.metadata.labels = (!pod_labels.is_empty()).then_some(pod_labels);
        pod.spec = Some(PodSpec {
            service_account_name: Some("api".to_owned()),
            containers: main.into_iter().map(|(c, _)| c).collect(),
            init_containers: (!init.is_empty()).then(|| init.into_iter().map(|(mut c, sidecar)| {
                if sidecar { c.restart_policy = Some("Always".to_owned()); }
                c
            }).collect()),
            volumes: volume.then(|| vec![Volume { name: "data".to_owned(), ..Volume::default() }]),
            dns_policy: Some("ClusterFirst".to_owned()),
            tolerations: Some(vec![Toleration {
                key: Some("node.kubernetes.io/not-ready".to_owned()),
                operator: Some("Exists".to_owned()),
                ..Toleration::default()
            }]),
            ..PodSpec::default()
        });
        pod.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some("kube-controller-manager".to_owned()),
            operation: Some("Update".to_owned()),
            fields_v1: Some(FieldsV1(serde_json::json!({"f:spec": {"f:dnsPolicy": {}}}))),
            ..ManagedFieldsEntry::default()
        }]);
        pod
    }
}

prop_compose! {
    fn bindings()(which in proptest::collection::vec(any::<bool>(), 7), eks in any::<bool>()) -> Bindings {
        let candidates = [
            AccessPolicy::test("s3").for_sa("api").aws_role("s3").region("eu-west-1"),
            AccessPolicy::test("gcs").for_sa("api").gcp_sa("r@my-project.iam.gserviceaccount.com"),
            AccessPolicy::test("blob").for_sa("api").azure("/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i", Some("11111111-2222-3333-4444-555555555555")),
            AccessPolicy::test("vault").for_sa("api").oidc("vault"),
            AccessPolicy::test("snow").for_sa("api").oidc("snowflake"),
            AccessPolicy::test("web-only").for_sa("api").gcp_direct().pod_selector(labels(&[("app", "web")])),
            AccessPolicy::test("pinned").for_sa("api").aws_generated().images(&["registry.example.com/"], true),
        ];
        let mut world = World::new().config_map_keys("aws-settings", &["AWS_REGION"]);
        for (policy, on) in candidates.into_iter().zip(which) {
            if on { world = world.policy(policy); }
        }
        if eks {
            world = world.sa_annotation("eks.amazonaws.com/role-arn", "arn:aws:iam::111122223333:role/legacy");
        }
        world
            .sa_annotation("azure.workload.identity/tenant-id", "72f988bf-86f1-41af-91ab-2d7cd011db47")
            .bindings()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutating_twice_equals_mutating_once(pod in pods(), bindings in bindings()) {
        let once = mutate(&pod, &bindings).unwrap();
        let twice = mutate(&once.pod, &bindings).unwrap();
        prop_assert_eq!(&twice.pod, &once.pod);
        prop_assert_eq!(&twice.applied, &once.applied);
    }

    #[test]
    fn the_patch_applies_to_its_input(pod in pods(), bindings in bindings()) {
        let patch = check_review(&pod, &bindings)?;
        // Passport only adds to a fresh pod: a patch that removed or replaced something
        // could drop fields the typed Pod does not know.
        for op in &patch.0 {
            prop_assert!(matches!(op, json_patch::PatchOperation::Add(_)), "{:?}", op);
        }
    }

    #[test]
    fn a_reinvocation_patch_applies_too(
        pod in pods(), first in bindings(), second in bindings(), stale in any::<bool>()
    ) {
        // A pod mutated once, reviewed again with other bindings (a policy added or removed in
        // between), and maybe with one of Passport's volumes as another version wrote it.
        let mut mutated = mutate(&pod, &first).unwrap().pod;
        if stale {
            let volumes = mutated.spec.as_mut().and_then(|s| s.volumes.as_mut());
            if let Some(volume) = volumes.into_iter().flatten().find(|v| v.name.starts_with("passport-")) {
                volume.empty_dir = Some(Default::default());
            }
        }
        check_review(&mutated, &second)?;
    }
}

/// Reviews a CREATE of `pod` and checks that its patch is the whole pods' JSON diff from `pod`
/// to `mutate`'s pod, and turns one into the other.
fn check_review(pod: &Pod, bindings: &Bindings) -> Result<json_patch::Patch, TestCaseError> {
    let mutated = mutate(pod, bindings).unwrap().pod;
    let mut before = serde_json::to_value(pod).unwrap();
    let after = serde_json::to_value(&mutated).unwrap();
    let body = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u", "operation": "CREATE", "namespace": bindings.namespace.clone(),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "userInfo": {}, "object": &before,
        },
    });
    let source = |_: &str, _: &str, _: &Pod| bindings.clone();
    let reviewed = review(body.to_string().as_bytes(), &source).unwrap();
    let patch: json_patch::Patch = match reviewed.response.patch {
        Some(bytes) => serde_json::from_slice(&bytes).unwrap(),
        None => json_patch::Patch(Vec::new()),
    };
    prop_assert_eq!(&patch, &json_patch::diff(&before, &after));
    json_patch::patch(&mut before, &patch).unwrap();
    prop_assert_eq!(before, after);
    Ok(patch)
}
