//! What only the real kube-apiserver judges: RBAC. The emulator allows every authenticated
//! request (FIDELITY.md), so these tests run in `make e2e-real` (`PASSPORT_E2E_APISERVER=real`)
//! and `make unit` skips them.

use std::time::Duration;

use anyhow::Context as _;

use k8s_openapi::api::{
    authentication::v1::TokenRequest,
    core::v1::{ConfigMap, ServiceAccount},
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};
use passport_e2e::{cluster::TestCluster, realapi::RealApiServer};
use serde_json::json;

use crate::apiserver::{api_error, eventually};

const WAIT: Duration = Duration::from_secs(30);

async fn real_cluster() -> anyhow::Result<TestCluster> {
    let cluster = TestCluster::fresh().await?;
    anyhow::ensure!(
        cluster.real_apiserver().is_some(),
        "RBAC is judged by the real API server only: run with PASSPORT_E2E_APISERVER=real"
    );
    Ok(cluster)
}

/// A client that authenticates with `token` instead of the admin's.
async fn client_with_token(server: &RealApiServer, token: &str) -> anyhow::Result<Client> {
    let mut kubeconfig: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(server.kubeconfig_path())?)?;
    kubeconfig["users"][0]["user"] = json!({ "token": token });
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&serde_yaml::to_string(&kubeconfig)?)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

#[tokio::test]
async fn service_account_tokens_are_authorized_by_rbac() -> anyhow::Result<()> {
    let cluster = real_cluster().await?;
    let server = cluster.real_apiserver().expect("checked by real_cluster");
    let ns = cluster.namespace("rbac").await?;
    let admin = cluster.client();
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({ "metadata": { "name": "reader" } }))?,
    )
    .await?;
    let request: TokenRequest = serde_json::from_value(json!({ "spec": { "audiences": [] } }))?;
    let token = sas
        .create_token_request("reader", &PostParams::default(), &request)
        .await?
        .status
        .and_then(|s| s.token)
        .expect("a token");
    let reader = client_with_token(server, &token).await?;
    let mine: Api<ConfigMap> = Api::namespaced(reader.clone(), &ns);

    let refused = api_error(mine.list(&ListParams::default()).await)?;
    assert_eq!((refused.code, refused.reason.as_str()), (403, "Forbidden"));
    assert!(
        refused.message.contains(&format!(
            "User \"system:serviceaccount:{ns}:reader\" cannot list resource \"configmaps\""
        )),
        "{}",
        refused.message
    );

    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "read-configmaps" },
                "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"] }],
            }))?,
        )
        .await?;
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "reader-reads-configmaps" },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps" },
                "subjects": [{ "kind": "ServiceAccount", "name": "reader", "namespace": ns }],
            }))?,
        )
        .await?;
    // The authorizer reads bindings from an informer: allowed a moment after the write.
    let listed = eventually(WAIT, || {
        let mine = mine.clone();
        async move { Ok(mine.list(&ListParams::default()).await.ok()) }
    })
    .await?;
    assert!(
        listed
            .items
            .iter()
            .any(|cm| cm.metadata.name.as_deref() == Some("kube-root-ca.crt")),
        "the namespace's kube-root-ca.crt is listed"
    );

    // The binding grants only what the Role says, only in its namespace.
    let create = api_error(
        mine.create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "nope" } }))?,
        )
        .await,
    )?;
    assert_eq!(create.code, 403, "{}", create.message);
    let elsewhere: Api<ConfigMap> = Api::namespaced(reader, "default");
    let other = api_error(elsewhere.list(&ListParams::default()).await)?;
    assert_eq!(other.code, 403, "{}", other.message);
    cluster.delete_namespace(&ns).await?;
    Ok(())
}

#[tokio::test]
async fn anonymous_clients_read_the_issuer_discovery_and_nothing_else() -> anyhow::Result<()> {
    let cluster = real_cluster().await?;
    let server = cluster.real_apiserver().expect("checked by real_cluster");
    let http = passport_e2e::tls::client_trusting(server.ca_pem())?;

    let discovery: serde_json::Value = http
        .get(format!("{}/.well-known/openid-configuration", server.url()))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(discovery["issuer"], json!(server.url()));
    let jwks_uri = discovery["jwks_uri"].as_str().expect("jwks_uri");
    let jwks: serde_json::Value = http
        .get(jwks_uri)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert!(
        jwks["keys"].as_array().is_some_and(|keys| !keys.is_empty()),
        "{jwks}"
    );

    let namespaces = http
        .get(format!("{}/api/v1/namespaces", server.url()))
        .send()
        .await?;
    assert_eq!(namespaces.status(), 403, "anonymous users list nothing");
    let body: serde_json::Value = namespaces.json().await?;
    assert!(
        body["message"].as_str().is_some_and(
            |m| m.contains("User \"system:anonymous\" cannot list resource \"namespaces\"")
        ),
        "{body}"
    );
    Ok(())
}

/// Every object of the rendered install (`config/verify`, which is `config/default` plus one
/// role) is accepted by the real API server's own validation, as `kubectl apply -k` would
/// send it; only cert-manager's kinds are left out (no cert-manager here).
#[tokio::test]
async fn the_rendered_install_is_accepted_by_the_api_server() -> anyhow::Result<()> {
    use kube::{
        api::{DynamicObject, Patch, PatchParams},
        core::GroupVersionKind,
        discovery::{Discovery, Scope},
    };
    let cluster = real_cluster().await?;
    let client = cluster.client();
    let mut objects = crate::install::render("verify");
    // The Namespace and the CRDs first, as kubectl orders them.
    objects.sort_by_key(|o| match o["kind"].as_str() {
        Some("Namespace") => 0,
        Some("CustomResourceDefinition") => 1,
        _ => 2,
    });
    let mut discovery = Discovery::new(client.clone()).run().await?;
    for object in objects {
        let (group, version) = match object["apiVersion"].as_str().unwrap().split_once('/') {
            Some((g, v)) => (g.to_owned(), v.to_owned()),
            None => (
                String::new(),
                object["apiVersion"].as_str().unwrap().to_owned(),
            ),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, object["kind"].as_str().unwrap());
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let Some((resource, caps)) = discovery.resolve_gvk(&gvk) else {
            anyhow::bail!("the API server does not serve {gvk:?}");
        };
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                object["metadata"]["namespace"].as_str().unwrap(),
                &resource,
            ),
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        api.patch(
            &name,
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(&object),
        )
        .await
        .with_context(|| format!("applying {gvk:?} {name}"))?;
        if gvk.kind == "CustomResourceDefinition" {
            tokio::time::sleep(Duration::from_secs(1)).await;
            discovery = Discovery::new(client.clone()).run().await?;
        }
    }
    Ok(())
}
