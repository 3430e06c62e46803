//! Routes and request bodies checked against Google's discovery documents
//! (`tests/fixtures/gcp-discovery/`, copied unchanged from the official client library).

use std::path::PathBuf;

use anyhow::bail;
use passport_e2e::gcp::{Api, ROUTES};
use serde_json::{Value, json};

use super::*;

/// The discovery documents: the copies in the repository, or `$PASSPORT_SPECS_DIR/gcp/latest`
/// to check against newer revisions.
fn specs_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("PASSPORT_SPECS_DIR") {
        Some(dir) => PathBuf::from(dir).join("gcp/latest"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gcp-discovery"),
    };
    anyhow::ensure!(
        dir.join("iam.v1.json").is_file(),
        "no iam.v1.json in {}",
        dir.display()
    );
    Ok(dir)
}

/// Every method of a discovery document, as (HTTP method, flatPath) with its parameters.
fn methods(doc: &Value) -> Vec<(String, String, Value)> {
    fn walk(resources: &Value, out: &mut Vec<(String, String, Value)>) {
        for resource in resources.as_object().into_iter().flat_map(|r| r.values()) {
            for method in resource["methods"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
            {
                let path = method["flatPath"]
                    .as_str()
                    .or(method["path"].as_str())
                    .unwrap_or_default();
                out.push((
                    method["httpMethod"].as_str().unwrap_or_default().to_owned(),
                    path.to_owned(),
                    method["parameters"].clone(),
                ));
            }
            walk(&resource["resources"], out);
        }
    }
    let mut out = Vec::new();
    walk(&doc["resources"], &mut out);
    out
}

#[test]
fn every_route_exists_in_the_discovery_documents() -> anyhow::Result<()> {
    let dir = specs_dir()?;
    let load = |name: &str| -> anyhow::Result<Value> {
        Ok(serde_json::from_str(&std::fs::read_to_string(
            dir.join(name),
        )?)?)
    };
    let iam = methods(&load("iam.v1.json")?);
    let sts = methods(&load("sts.v1.json")?);
    for route in ROUTES {
        let methods = match route.api {
            Api::Iam => &iam,
            Api::Sts => &sts,
            Api::IamCredentials => {
                // No discovery document for iamcredentials in specs/: pin the documented path.
                assert_eq!(
                    route.path,
                    "v1/projects/{projectsId}/serviceAccounts/{serviceAccountsId}:generateAccessToken"
                );
                continue;
            }
            Api::TestOnly => {
                assert!(
                    route.path.starts_with('_'),
                    "test-only routes live under /_: {}",
                    route.path
                );
                continue;
            }
        };
        let Some((_, _, params)) = methods
            .iter()
            .find(|(m, p, _)| m == route.method && p == route.path)
        else {
            bail!(
                "{} {} is not in the {:?} discovery document",
                route.method,
                route.path,
                route.api
            );
        };
        for query in route.query {
            assert!(
                params.get(*query).is_some(),
                "{} {} has no parameter {query}",
                route.method,
                route.path
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn every_schema_field_and_type_is_accepted_in_request_bodies() -> anyhow::Result<()> {
    let env = Env::start(|o| o).await?;
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(specs_dir()?.join("iam.v1.json"))?)?;
    let dummy = |schema: &Value| match schema["type"].as_str() {
        Some("string") => json!("x"),
        Some("boolean") => json!(false),
        Some("array") => json!([]),
        Some("integer") => json!(1),
        _ => json!({}),
    };
    let check = |schema: &str| -> Vec<(String, Value)> {
        doc["schemas"][schema]["properties"]
            .as_object()
            .map(|p| p.iter().map(|(k, v)| (k.clone(), dummy(v))).collect())
            .unwrap_or_default()
    };
    // Refusals for other reasons (validation) are fine; a field the fake does not know, or
    // whose JSON type it disagrees on, is not.
    let unknown_name = |body: &Value| {
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Invalid JSON payload")
    };
    for (i, (field, value)) in check("WorkloadIdentityPool").into_iter().enumerate() {
        let (_, body) = env
            .post(
                &format!("v1/{}?workloadIdentityPoolId=pool-{i:02}", pools(PROJECT)),
                json!({ field.clone(): value }),
            )
            .await?;
        assert!(
            !unknown_name(&body),
            "WorkloadIdentityPool.{field} refused: {body}"
        );
    }
    env.create_pool("parent").await?;
    let provider_fields = check("WorkloadIdentityPoolProvider")
        .into_iter()
        .map(|(k, v)| (k, v, false));
    let oidc_fields = check("Oidc").into_iter().map(|(k, v)| (k, v, true));
    for (field, value, nested) in provider_fields.chain(oidc_fields) {
        let body = if nested {
            json!({ "oidc": { field.clone(): value } })
        } else {
            json!({ field.clone(): value })
        };
        let (_, body) = env
            .post(
                &format!(
                    "v1/{}/parent/providers?workloadIdentityPoolProviderId=prov",
                    pools(PROJECT)
                ),
                body,
            )
            .await?;
        assert!(
            !unknown_name(&body),
            "provider field {field} refused: {body}"
        );
    }
    for (field, value) in check("Policy") {
        let (_, body) = env
            .post(
                &format!("v1/projects/-/serviceAccounts/{SA}:setIamPolicy"),
                json!({ "policy": { field.clone(): value } }),
            )
            .await?;
        assert!(!unknown_name(&body), "Policy.{field} refused: {body}");
    }
    Ok(())
}
