//! Time per pod of `mutate` with 1, 10 and 50 containers, the review's parse excluded: the pod
//! and its bindings are built before the timed loop (target, DESIGN.md section 7: under 10 µs
//! for 10 containers). Beside it, for context, `mutate` plus the JSON patch (what `review` does
//! after its parse) and the whole `review` from the request's bytes.
//!
//! The pod is a Deployment's pod as the API server hands it to the webhook (owner reference,
//! labels, the `kube-api-access` volume, per container ports, env, resources, a probe and a
//! mount), of a service account named by an AWS AccessPolicy with an image condition, in a
//! namespace with four more policies for other service accounts and clouds.
//!
//! divan rather than criterion: it is one small crate over the clap already in the tree (criterion
//! brings plotters, rayon and a serde stack of its own: minutes of compile time for every
//! `cargo test`), it takes the benchmark's arguments as a list, and without `--bench` (so under
//! `cargo test`) it runs each benchmark once as a test. `make test` thereby keeps this file
//! compiling and its setup asserting; `make bench` runs it for real (`cargo bench`) and
//! `bench/divan_json.py` turns divan's table into `bench/results/mutate.json`.

// The whole file is benchmark code: a broken setup should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::{NS, PolicyFixture, World};
use divan::{Bencher, black_box};
use k8s_openapi::api::core::v1::Pod;
use passport_crds::AccessPolicy;
use passport_webhook::Bindings;
use serde_json::json;

/// The allocator of the shipped `passport` binary (operator/src/main.rs): the benchmark times
/// what ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

const CONTAINERS: [usize; 3] = [1, 10, 50];

/// The namespace's policies: the pod's service account `api` gets an AWS role when its images
/// come from the team's registry; the other four name other service accounts.
fn bindings() -> Bindings {
    World::new()
        .policy(
            AccessPolicy::test("api")
                .for_sa("api")
                .aws_generated()
                .images(&["registry.example.com/payments/"], false),
        )
        .policy(
            AccessPolicy::test("reports")
                .for_sa("reports")
                .gcp_sa("reports@my-project.iam.gserviceaccount.com"),
        )
        .policy(AccessPolicy::test("blob").for_sa("worker").azure(
            "/subscriptions/s/resourceGroups/apps/providers/Microsoft.ManagedIdentity/userAssignedIdentities/blob",
            Some("11111111-2222-3333-4444-555555555555"),
        ))
        .policy(AccessPolicy::test("vault").for_sa("worker").oidc("vault"))
        .policy(AccessPolicy::test("batch").for_sa("batch").aws_role("batch"))
        .bindings()
}

fn container(i: usize) -> serde_json::Value {
    json!({
        "name": format!("c{i}"),
        "image": format!("registry.example.com/payments/app-{i}:1.4.2"),
        "ports": [{"name": "http", "containerPort": 8080 + i, "protocol": "TCP"}],
        "env": [
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
            {"name": "GOMAXPROCS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}}},
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080 + i, "scheme": "HTTP"}, "periodSeconds": 10},
        "volumeMounts": [{"name": "kube-api-access-x7k2p", "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    })
}

/// A Deployment's pod of service account `api` with `containers` containers.
fn pod(containers: usize) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "payments-api-7d9c5b8f4-",
            "namespace": NS,
            "labels": {"app": "payments-api", "pod-template-hash": "7d9c5b8f4", "team": "payments"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-30T09:12:44Z"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "payments-api-7d9c5b8f4",
                "uid": "5b0c8a52-0a39-4a53-9d8e-3f6c7b1e2d4a", "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {
            "serviceAccountName": "api",
            "containers": (0..containers).map(container).collect::<Vec<_>>(),
            "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]}}],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "securityContext": {"runAsNonRoot": true},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ],
            "priority": 0,
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
        },
    }))
    .unwrap()
}

/// The pod and its bindings, checked to be a covered pod: a benchmark of a pod that gets
/// nothing would time the early return.
fn setup(containers: usize) -> (Pod, Bindings) {
    let (pod, bindings) = (pod(containers), bindings());
    let mutation = passport_webhook::mutate(&pod, &bindings).expect("the pod is admitted");
    assert_eq!(mutation.applied, [format!("{NS}/api")]);
    let injected = mutation.pod.spec.as_ref().unwrap().containers.iter();
    assert_eq!(
        injected
            .filter(|c| { c.env.iter().flatten().any(|e| e.name == "AWS_ROLE_ARN") })
            .count(),
        containers,
        "every container gets the AWS contract"
    );
    (pod, bindings)
}

/// The AdmissionReview of a CREATE of `pod`, as the API server sends it.
fn review_body(pod: &Pod) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0f9d4c5e-6b1a-4d8e-9c3f-2a7b8e1d5c60",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": NS,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "c1f0d7a2-3b4e-4f5a-8c6d-7e8f9a0b1c2d",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }))
    .unwrap()
}

/// The pod `review` hands to `mutate_owned`: parsed from the request's bytes (`Admission`),
/// with the lists a parse leaves (a parse sizes a short list for four items; a clone would size
/// it for exactly its items, and every append would reallocate where the server's does not).
fn parsed(body: &[u8]) -> Pod {
    passport_webhook::Admission::parse(body)
        .unwrap()
        .into_pod()
        .unwrap()
}

/// `mutate` alone: the decision, the trace and the injected pod. `review` owns the pod it
/// parsed and mutates it in place (`mutate_owned`), so each iteration gets its own pod, parsed
/// outside the timing.
#[divan::bench(args = CONTAINERS)]
fn mutate(bencher: Bencher, containers: usize) {
    let (pod, bindings) = setup(containers);
    let body = review_body(&pod);
    bencher
        .with_inputs(|| parsed(&body))
        .bench_local_values(|pod| passport_webhook::mutate_owned(pod, black_box(&bindings)));
}

/// `mutate` and its JSON patch as the response carries it (`Mutation::patch_json`): what
/// `review` does past its parse. The mutation is returned with its patch, so dropping the pod is
/// not timed (as in `mutate`).
#[divan::bench(args = CONTAINERS)]
fn mutate_and_patch(bencher: Bencher, containers: usize) {
    let (pod, bindings) = setup(containers);
    let body = review_body(&pod);
    bencher
        .with_inputs(|| parsed(&body))
        .bench_local_values(|pod| {
            let mutation =
                passport_webhook::mutate_owned(pod, black_box(&bindings)).expect("admitted");
            let patch = mutation.patch_json().unwrap();
            (mutation, patch)
        });
}

/// The whole `review` from the request's bytes: the parse, `mutate`, the patch and the response.
#[divan::bench(args = CONTAINERS)]
fn review_with_parse(bencher: Bencher, containers: usize) {
    let (pod, bindings) = setup(containers);
    let body = review_body(&pod);
    let source = move |_: &str, _: &str, _: &Pod| bindings.clone();
    let reviewed = passport_webhook::review(&body, &source).unwrap();
    assert!(reviewed.response.patch.is_some());
    bencher.bench_local(|| passport_webhook::review(black_box(&body), &source));
}
