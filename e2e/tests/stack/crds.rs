//! The generated CRDs as an API server sees them: structural, documented, with CEL rules that
//! compile; every sample admitted as written; every bad sample refused with its message.

use std::{collections::BTreeMap, path::PathBuf};

use passport_e2e::schema;
use serde::Deserialize as _;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_docs(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// Each deliberately bad sample in `tests/fixtures/invalid/`, with the message a human needs to
/// fix it. The expectations live here, not in the fixtures.
pub const INVALID_SAMPLES: [(&str, &str); 14] = [
    (
        "missing-cloud.yaml",
        "spec: Invalid value: set one cloud block: aws, gcp, azure or oidc",
    ),
    (
        "two-clouds.yaml",
        "set only one of aws, gcp, azure or oidc: a FederatedTrust trusts one cloud account",
    ),
    (
        "two-clouds-policy.yaml",
        "set only one of aws, gcp, azure or oidc: an AccessPolicy grants one cloud identity",
    ),
    (
        "short-expiration.yaml",
        "spec.token.expirationSeconds: Invalid value: 300: token.expirationSeconds must be at least 600",
    ),
    (
        "bad-account-id.yaml",
        "accountId must be the 12-digit AWS account ID",
    ),
    (
        "bad-permissions-boundary.yaml",
        "permissionsBoundaryArn must be an IAM managed policy ARN",
    ),
    (
        "reserved-pool-id.yaml",
        "poolId must be 4-32 lowercase letters, digits or hyphens and must not start with gcp-",
    ),
    (
        "role-name-and-arn.yaml",
        "set roleName (Passport creates and owns the role) or roleArn (adopt an existing role), not both",
    ),
    (
        "subject-as-service-account.yaml",
        "not system:serviceaccount:... subjects",
    ),
    ("bad-schedule.yaml", "start and end are 24-hour HH:MM times"),
    ("missing-trust-ref.yaml", "spec.trustRef: Required value"),
    ("http-issuer.yaml", "issuer.url must be an https:// URL"),
    ("gcp-both-modes.yaml", "set exactly one of serviceAccount"),
    (
        "unknown-enforcement.yaml",
        "spec.enforcement: Unsupported value: \"Deny\": supported values: \"Skip\", \"Reject\"",
    ),
];

/// kind -> openAPIV3Schema, read from the committed `config/crd/` (what users apply).
fn schemas() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(repo().join("config/crd")).expect("config/crd") {
        let path = entry.expect("dir entry").path();
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("passport.dev_"))
        {
            continue;
        }
        for crd in yaml_docs(&path) {
            let kind = crd["spec"]["names"]["kind"]
                .as_str()
                .expect("kind")
                .to_owned();
            let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
            assert!(schema.is_object(), "{kind} has no openAPIV3Schema");
            out.insert(kind, schema);
        }
    }
    assert_eq!(
        out.len(),
        2,
        "expected the FederatedTrust and AccessPolicy CRDs"
    );
    out
}

/// What the API server does on create: prune, default, validate. Returns the stored object,
/// the fields pruning removed (as a before/after pair), or the validation errors.
fn admit(schemas: &BTreeMap<String, Value>, obj: &Value) -> Result<Value, String> {
    let kind = obj["kind"].as_str().expect("kind");
    let schema = &schemas[kind];
    let mut pruned = obj.clone();
    schema::prune(schema, &mut pruned);
    if &pruned != obj {
        return Err(format!(
            "unknown fields would be dropped:\n{obj}\n->\n{pruned}"
        ));
    }
    let defaulted = schema::apply_defaults(schema, &pruned);
    schema::validate(schema, &defaulted, None).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    Ok(defaulted)
}

#[test]
fn generated_crds_are_structural_and_their_cel_rules_compile() {
    for (kind, schema) in schemas() {
        let errors = schema::structural_errors(&schema);
        assert!(
            errors.is_empty(),
            "{kind} is not structural:\n{}",
            errors.join("\n")
        );
        let cel_errors = schema::cel_compile_errors(&schema);
        assert!(
            cel_errors.is_empty(),
            "{kind}: CEL rules do not compile: {cel_errors:?}"
        );
    }
}

/// The API server estimates each CEL rule's worst-case cost from the schema's bounds and refuses
/// a CRD whose rules could exceed the budget; every node a rule runs over must be bounded.
#[test]
fn every_node_with_a_cel_rule_is_bounded() {
    fn walk(node: &Value, path: &str, unbounded: &mut Vec<String>) {
        if node.get("x-kubernetes-validations").is_some() {
            let bounded = |n: &Value| match n.get("type").and_then(Value::as_str) {
                Some("string") => n.get("maxLength").is_some() || n.get("enum").is_some(),
                Some("array") => n.get("maxItems").is_some(),
                Some("object") => n.get("properties").is_some() || n.get("maxProperties").is_some(),
                _ => true,
            };
            if !bounded(node) {
                unbounded.push(path.to_owned());
            }
            if let Some(items) = node.get("items").filter(|i| !bounded(i)) {
                unbounded.push(format!("{path}[*] ({})", items["type"]));
            }
        }
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                walk(child, &format!("{path}.{name}"), unbounded);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(child) = node.get(key).filter(|c| c.is_object()) {
                walk(child, &format!("{path}[*]"), unbounded);
            }
        }
    }
    for (kind, schema) in schemas() {
        let mut unbounded = Vec::new();
        walk(&schema, &kind, &mut unbounded);
        assert!(
            unbounded.is_empty(),
            "CEL rules over unbounded values: {unbounded:?}"
        );
    }
}

/// `kubectl explain` shows the schema's descriptions: every field must have one.
#[test]
fn every_field_is_documented() {
    fn walk(node: &Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                let child_path = format!("{path}.{name}");
                let top_level = matches!(name.as_str(), "apiVersion" | "kind" | "metadata");
                if child.get("description").is_none() && !top_level {
                    missing.push(child_path.clone());
                }
                walk(child, &child_path, missing);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(child) = node.get(key).filter(|c| c.is_object()) {
                walk(child, path, missing);
            }
        }
    }
    for (kind, schema) in schemas() {
        let mut missing = Vec::new();
        walk(&schema, &kind, &mut missing);
        assert!(
            missing.is_empty(),
            "fields without a description: {missing:?}"
        );
    }
}

#[test]
fn every_sample_is_admitted_as_written() {
    let schemas = schemas();
    let mut count = 0;
    for entry in std::fs::read_dir(repo().join("config/samples")).expect("config/samples") {
        let path = entry.expect("dir entry").path();
        if path.file_name().is_some_and(|n| n == "kustomization.yaml") {
            continue;
        }
        for doc in yaml_docs(&path) {
            if let Err(error) = admit(&schemas, &doc) {
                panic!("{} is refused:\n{error}", path.display());
            }
            count += 1;
        }
    }
    assert!(
        count >= 8,
        "expected a FederatedTrust per cloud and several AccessPolicies, found {count}"
    );
}

#[test]
fn defaults_are_applied_to_samples() {
    let schemas = schemas();
    let trust = &yaml_docs(&repo().join("config/samples/federatedtrust-azure.yaml"))[0];
    let stored = admit(&schemas, trust).expect("admitted");
    assert_eq!(
        stored["spec"]["azure"]["audience"],
        "api://AzureADTokenExchange"
    );
    assert_eq!(
        stored["spec"]["azure"]["authorityHost"],
        "https://login.microsoftonline.com/"
    );
    assert_eq!(stored["spec"]["deletionPolicy"], "Delete");

    let policy = &yaml_docs(&repo().join("config/samples/accesspolicy-gcp.yaml"))[0];
    let stored = admit(&schemas, policy).expect("admitted");
    assert_eq!(stored["spec"]["token"]["expirationSeconds"], 3600);
    assert_eq!(stored["spec"]["enforcement"], "Skip");
}

#[test]
fn bad_samples_are_refused_with_a_message_that_says_what_to_fix() {
    let schemas = schemas();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let on_disk = std::fs::read_dir(&dir).expect("fixtures").count();
    assert_eq!(
        on_disk,
        INVALID_SAMPLES.len(),
        "every bad sample needs an expected message here"
    );
    for (file, expected) in INVALID_SAMPLES {
        let doc = &yaml_docs(&dir.join(file))[0];
        match admit(&schemas, doc) {
            Ok(_) => panic!("{file} was admitted"),
            Err(message) => assert!(
                message.contains(expected),
                "{file}: expected a message containing\n  {expected}\ngot\n  {message}"
            ),
        }
    }
}

#[test]
fn the_cloud_and_gcp_ids_of_a_trust_cannot_change() {
    let schemas = schemas();
    let schema = &schemas["FederatedTrust"];
    let old = admit(
        &schemas,
        &yaml_docs(&repo().join("config/samples/federatedtrust-gcp.yaml"))[0],
    )
    .expect("admitted");

    let mut renamed = old.clone();
    renamed["spec"]["gcp"]["poolId"] = "another-pool".into();
    let errors = schema::validate(schema, &renamed, Some(&old)).expect_err("pool id change");
    assert!(
        errors[0]
            .message
            .contains("poolId and providerId cannot change"),
        "{errors:?}"
    );

    let mut moved = old.clone();
    let spec = moved["spec"].as_object_mut().expect("spec");
    spec.remove("gcp");
    spec.insert(
        "oidc".into(),
        serde_json::json!({"allowedAudiences": ["vault"]}),
    );
    let errors = schema::validate(schema, &moved, Some(&old)).expect_err("cloud change");
    assert!(
        errors.iter().any(|e| e
            .message
            .contains("the cloud of a FederatedTrust cannot change")),
        "{errors:?}"
    );

    // Unrelated edits are fine.
    let mut relabelled = old.clone();
    relabelled["spec"]["deletionPolicy"] = "Delete".into();
    assert_eq!(schema::validate(schema, &relabelled, Some(&old)), Ok(()));
}
