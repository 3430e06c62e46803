//! Passport's API served by an API server: the emulator, or a real cluster when
//! `PASSPORT_E2E_KUBECONFIG` is set. Server-side defaults, CEL refusals with their messages,
//! transition rules, generation and the status subresource.

use std::path::PathBuf;

use kube::{
    Api,
    api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams},
    core::GroupVersionKind,
};
use passport_crds::{AccessPolicy, FederatedTrust};
use passport_e2e::cluster::TestCluster;
use serde_json::{Value, json};

use crate::crds::INVALID_SAMPLES;

fn repo_file(path: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn dynamic(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("passport.dev", "v1alpha1", kind))
}

/// The object as a user would submit it: raw JSON, so the server (not our types) fills defaults.
fn submitted(mut doc: Value, namespace: Option<&str>) -> DynamicObject {
    let metadata = doc["metadata"].as_object_mut().unwrap();
    match namespace {
        Some(ns) => {
            metadata.insert("namespace".into(), ns.into());
        }
        None => {
            // Cluster-scoped objects may outlive a test on a real cluster: unique names.
            let name = metadata.remove("name").unwrap();
            metadata.insert(
                "generateName".into(),
                format!("{}-", name.as_str().unwrap()).into(),
            );
        }
    }
    serde_json::from_value(doc).unwrap()
}

fn refusal(result: Result<DynamicObject, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.message),
        other => panic!("expected the API server to refuse, got {other:?}"),
    }
}

#[tokio::test]
async fn the_api_server_defaults_validates_and_separates_status_from_spec() {
    let cluster = TestCluster::connect().await.unwrap();
    cluster.install_crds().await.unwrap();
    let ns = cluster.namespace("passport-api").await.unwrap();
    let client = cluster.client();
    let raw = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &dynamic("AccessPolicy"));

    // Defaults come from the server.
    let created = raw
        .create(
            &PostParams::default(),
            &submitted(repo_file("config/samples/accesspolicy-gcp.yaml"), Some(&ns)),
        )
        .await
        .unwrap();
    assert_eq!(created.data["spec"]["token"]["expirationSeconds"], 3600);
    assert_eq!(created.data["spec"]["enforcement"], "Skip");
    assert_eq!(created.metadata.generation, Some(1));

    // Every bad AccessPolicy is refused with 422 and its message.
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    for (file, expected) in INVALID_SAMPLES {
        let doc: Value =
            serde_yaml::from_str(&std::fs::read_to_string(fixtures.join(file)).unwrap()).unwrap();
        let result = match doc["kind"].as_str() {
            Some("AccessPolicy") => {
                raw.create(&PostParams::default(), &submitted(doc, Some(&ns)))
                    .await
            }
            _ => {
                Api::<DynamicObject>::all_with(client.clone(), &dynamic("FederatedTrust"))
                    .create(&PostParams::default(), &submitted(doc, None))
                    .await
            }
        };
        let (code, message) = refusal(result);
        assert_eq!(code, 422, "{file}: {message}");
        assert!(
            message.contains(expected),
            "{file}: expected {expected:?} in {message:?}"
        );
    }

    // Status goes through /status and leaves spec and generation alone; spec changes bump it.
    let typed = Api::<AccessPolicy>::namespaced(client, &ns);
    let name = created.metadata.name.clone().unwrap();
    let status = json!({"status": {"cloud": "gcp", "identity": "payments-api@my-project.iam.gserviceaccount.com"}});
    let patched = typed
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(1));
    assert_eq!(patched.status.unwrap().cloud.as_deref(), Some("gcp"));
    let ignored = typed
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"cloud": "aws"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        ignored.status.unwrap().cloud.as_deref(),
        Some("gcp"),
        "status written through the main resource"
    );
    assert_eq!(ignored.metadata.generation, Some(1));
    let grown = typed
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"serviceAccounts": ["api", "worker"]}})),
        )
        .await
        .unwrap();
    assert_eq!(grown.metadata.generation, Some(2));
    assert_eq!(grown.spec.service_accounts, ["api", "worker"]);

    cluster.delete_namespace(&ns).await.unwrap();
}

#[tokio::test]
async fn a_trust_keeps_its_cloud_and_gcp_ids_but_takes_other_edits() {
    let cluster = TestCluster::connect().await.unwrap();
    cluster.install_crds().await.unwrap();
    let raw = Api::<DynamicObject>::all_with(cluster.client(), &dynamic("FederatedTrust"));
    let created = raw
        .create(
            &PostParams::default(),
            &submitted(repo_file("config/samples/federatedtrust-gcp.yaml"), None),
        )
        .await
        .unwrap();
    let name = created.metadata.name.clone().unwrap();
    let typed = Api::<FederatedTrust>::all(cluster.client());

    let renamed = typed
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"gcp": {"poolId": "another-pool"}}})),
        )
        .await;
    let (code, message) = match renamed {
        Err(kube::Error::Api(status)) => (status.code, status.message),
        other => panic!("pool id change accepted: {other:?}"),
    };
    assert_eq!(code, 422);
    assert!(
        message.contains("poolId and providerId cannot change"),
        "{message}"
    );

    let moved = typed
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"gcp": null, "oidc": {"allowedAudiences": ["vault"]}}})),
        )
        .await;
    assert!(
        matches!(&moved, Err(kube::Error::Api(s)) if s.message.contains("the cloud of a FederatedTrust cannot change")),
        "{moved:?}"
    );

    let retained = typed
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"deletionPolicy": "Delete"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        retained.spec.deletion_policy,
        passport_crds::federated_trust::DeletionPolicy::Delete
    );
    assert_eq!(retained.metadata.generation, Some(2));
    typed.delete(&name, &Default::default()).await.unwrap();
}
