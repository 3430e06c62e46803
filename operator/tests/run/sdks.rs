//! The clouds' own credential loaders in Go and Rust, given nothing but what Passport's webhook
//! put into a pod and what the kubelet stand-in wrote for it, beside the Python ones of
//! `webhook::each_clouds_own_loader_gets_credentials_from_an_injected_pods_files`: the Go
//! probes (`e2e/probes`: aws-sdk-go-v2, golang.org/x/oauth2/google, azidentity) as a process,
//! and aws-config and google-cloud-auth in this process with the pod's environment as a map.
//! A difference between clients is a bug in Passport or in a fake, never in the client.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
};

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt as _, api::PostParams};
use passport_e2e::{
    kubelet::{ContainerView, Kubelet, PodFiles},
    stack::{AZURE_CLIENT_ID, GCP_SERVICE_ACCOUNT},
};

use crate::{
    aws::TRUST_LABEL,
    harness::{apply_policy, apply_trust, harness, policy_ready, wait_policy},
    webhook::{env, injected_pod, pod, register},
};

/// The variable naming the Go probe binary (`make probes` builds it).
const PROBE_BIN: &str = "PASSPORT_PROBE_BIN";

/// The region the test's AWS policy sets, so that pods get `AWS_REGION` from Passport.
const REGION: &str = "us-east-1";

/// The Go probe, or a failure that says how to get one: a test that needs it never skips.
fn probe_bin() -> PathBuf {
    let Some(path) = std::env::var_os(PROBE_BIN) else {
        panic!(
            "{PROBE_BIN} is not set: build the Go probes with `make probes` and run with \
             {PROBE_BIN}=<repository>/.cache/go/bin/passport-probe (`make unit` and \
             `make e2e-real` do both)"
        );
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "{PROBE_BIN}={} is not a file: run `make probes`",
        path.display()
    );
    path
}

/// A namespace with the demo's trusts and policies, and what the kubelet stand-in wrote for two
/// of its pods: `shop`, which every policy names, and `nobody`, which none does.
struct Injected {
    /// The random part of the names, so `shop-<id>` is the role.
    id: String,
    /// `<root>/<namespace>/<pod>/<volume>/`.
    root: PathBuf,
    shop: PodFiles,
    nobody: PodFiles,
}

impl Injected {
    async fn start(prefix: &str) -> Self {
        let h = harness();
        let client = h.client().await;
        register(&client).await;
        let id = uuid::Uuid::new_v4().simple().to_string()[..6].to_owned();
        let trust = format!("{prefix}-{id}");
        let ns = h.namespace(&client, prefix, &[(TRUST_LABEL, &trust)]).await;
        h.service_accounts(&client, &ns, &["shop", "nobody"]).await;
        apply_demo(&client, &ns, &trust, &id).await;
        for cloud in ["aws", "gcp", "azure"] {
            wait_policy(
                &client,
                &ns,
                &format!("shop-{cloud}"),
                "Ready",
                policy_ready,
            )
            .await;
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let shop = injected_pod(&pods, "shop", "shop")
            .await
            .unwrap_or_else(|| panic!("the shop pod was not injected\n{}", h.operator_log()));
        assert_eq!(env(&shop, "AWS_REGION").as_deref(), Some(REGION));
        let nobody = pods
            .create(&PostParams::default(), &pod("nobody", "nobody"))
            .await
            .unwrap();
        assert_eq!(env(&nobody, "AWS_ROLE_ARN"), None);

        let root = h.stack.dir().join(format!("pods-{id}"));
        let kubelet = Kubelet::new(client.clone(), &root);
        let shop = kubelet.materialise(&ns, &shop.name_any()).await.unwrap();
        let nobody = kubelet.materialise(&ns, "nobody").await.unwrap();
        Self {
            id,
            root,
            shop,
            nobody,
        }
    }

    /// The assumed-role ARN STS reports for the shop pod, up to the session name.
    fn assumed_role(&self) -> String {
        format!("assumed-role/shop-{}/", self.id)
    }
}

/// `e2e/demo/demo.yaml`'s trusts and policies, renamed for `ns` and `trust` (which selects
/// `ns` by its label), with a region on the AWS policy.
pub(crate) async fn apply_demo(client: &kube::Client, ns: &str, trust: &str, id: &str) {
    let demo = include_str!("../../../e2e/demo/demo.yaml");
    for doc in demo.split("\n---\n") {
        let value: serde_yaml::Value = serde_yaml::from_str(doc).unwrap();
        let doc = doc
            .replace(
                "passport.dev/demo: \"true\"",
                &format!("{TRUST_LABEL}: {trust}"),
            )
            .replace("name: demo-aws", &format!("name: {trust}-aws"))
            .replace("name: demo-gcp", &format!("name: {trust}-gcp"))
            .replace("name: demo-azure", &format!("name: {trust}-azure"))
            .replace("poolId: demo-cluster", &format!("poolId: pool-{id}"))
            .replace(
                "roleName: demo-shop",
                &format!("roleName: shop-{id}\n    region: {REGION}"),
            )
            .replace("namespace: demo", &format!("namespace: {ns}"));
        match value["kind"].as_str() {
            Some("FederatedTrust") => {
                apply_trust(client, &doc).await;
            }
            Some("AccessPolicy") => {
                apply_policy(client, ns, &doc).await;
            }
            _ => {}
        }
    }
}

/// Runs the Go probe on a pod's files: whether every cloud succeeded, and what it printed.
fn run_probe(probe: &Path, files: &PodFiles, root: &Path) -> (bool, String) {
    let pod_file = root.join(format!("{}.json", files.pod.name_any()));
    std::fs::write(&pod_file, serde_json::to_vec(&files.pod).unwrap()).unwrap();
    let out = Command::new(probe)
        .arg("--pod")
        .arg(&pod_file)
        .arg("--root")
        .arg(root)
        .args(["--container", "app"])
        // Nothing of this process: the probe gets the pod's env from the pod. The stack CA is
        // the machine's trust, not the pod's.
        .env_clear()
        .env("SSL_CERT_FILE", harness().stack.apiserver.ca_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.success(), format!("{text}{stderr}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn go_sdks_get_credentials_from_an_injected_pods_env_and_files() {
    let probe = probe_bin();
    let h = harness();
    let _shared = h.shared().await;
    let pods = Injected::start("sdkgo").await;

    let (ok, text) = run_probe(&probe, &pods.shop, &pods.root);
    println!("{text}");
    assert!(ok, "{text}");
    let line = |cloud: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("{cloud} ")))
            .unwrap_or_else(|| panic!("no {cloud} line in\n{text}"))
            .to_owned()
    };
    let aws = line("aws");
    assert!(
        aws.contains("AWS STS says the caller is arn:aws:sts::"),
        "{text}"
    );
    assert!(aws.contains(&pods.assumed_role()), "{text}");
    assert!(
        line("gcp").contains(&format!("access token for {GCP_SERVICE_ACCOUNT}")),
        "{text}"
    );
    assert!(
        line("azure").contains(&format!("token for client {AZURE_CLIENT_ID}")),
        "{text}"
    );

    // A pod whose service account no policy names has nothing to exchange.
    let (ok, text) = run_probe(&probe, &pods.nobody, &pods.root);
    println!("{text}");
    assert!(!ok, "{text}");
    assert_eq!(text.matches("FAILED").count(), 3, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_loaders_get_credentials_from_an_injected_pods_env_and_files() {
    let h = harness();
    let _shared = h.shared().await;
    let pods = Injected::start("sdkrs").await;
    let shop = container(&pods.shop);
    let nobody = container(&pods.nobody);

    let caller = aws_caller(&shop).await.unwrap();
    assert!(caller.starts_with("arn:aws:sts::"), "{caller}");
    // The session name aws-config's web identity provider chooses when AWS_ROLE_SESSION_NAME
    // is unset (Passport sets none).
    assert!(
        caller.contains(&format!("{}web-identity-token-", pods.assumed_role())),
        "{caller}"
    );
    assert_eq!(gcp_identity(&shop).await.unwrap(), GCP_SERVICE_ACCOUNT);

    // A pod whose service account no policy names has nothing to exchange.
    let refused = aws_caller(&nobody).await.unwrap_err();
    assert!(
        format!("{refused:#}").contains("no credentials found in chain"),
        "{refused:#}"
    );
    let refused = gcp_identity(&nobody).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("GOOGLE_APPLICATION_CREDENTIALS"),
        "{refused:#}"
    );
}

fn container(files: &PodFiles) -> ContainerView {
    files
        .containers
        .get("app")
        .cloned()
        .expect("the pod's app container")
}

/// aws-config's default chain with the container's environment alone (web identity from
/// `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE`, STS at `AWS_ENDPOINT_URL_STS`, the region
/// from `AWS_REGION`), then STS `GetCallerIdentity` with the credentials it loaded: the
/// caller's ARN.
async fn aws_caller(view: &ContainerView) -> anyhow::Result<String> {
    use aws_config::BehaviorVersion;
    let mut vars: HashMap<String, String> = view.env_on_host().into_iter().collect();
    // The chain ends with the instance metadata service: this machine is not the pod's node,
    // and its metadata must be neither asked nor used (the Go probe turns it off too).
    vars.insert("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned());
    let config = aws_config::defaults(BehaviorVersion::latest())
        .env(aws_types::os_shim_internal::Env::from(vars))
        .http_client(passport_e2e::aws::sdk::https_client_trusting(
            &harness().stack.ca.cert_pem(),
        )?)
        .load()
        .await;
    let caller = aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await?;
    Ok(caller.arn().unwrap_or_default().to_owned())
}

/// google-cloud-auth's `external_account` credentials from the configuration
/// `GOOGLE_APPLICATION_CREDENTIALS` names (STS, then impersonation), asked for request headers;
/// the account the fake says their access token stands for.
async fn gcp_identity(view: &ContainerView) -> anyhow::Result<String> {
    use google_cloud_auth::credentials::{CacheableResource, external_account};
    let env = view.env_on_host();
    let file = env
        .get("GOOGLE_APPLICATION_CREDENTIALS")
        .ok_or_else(|| anyhow::anyhow!("GOOGLE_APPLICATION_CREDENTIALS is not set"))?;
    // The configuration names the token file by its path in the container.
    let mut text = view.rewrite_text(&std::fs::read_to_string(file)?);
    // google-cloud-auth's HTTP client trusts the platform roots only (SSL_CERT_FILE of this
    // process, which a test cannot set), so it reaches the fake over its plain-HTTP listener,
    // which shares the HTTPS one's state; the Go and Python clients go over HTTPS.
    let gcp = &harness().stack.gcp;
    text = text.replace(&gcp.https().base, &gcp.http().base);
    anyhow::ensure!(
        !text.contains("https://"),
        "an endpoint not rewritten: {text}"
    );
    let credentials = external_account::Builder::new(serde_json::from_str(&text)?)
        .with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
        .build()?;
    let headers = match credentials.headers(http::Extensions::new()).await? {
        CacheableResource::New { data, .. } => data,
        CacheableResource::NotModified => anyhow::bail!("no headers on a first call"),
    };
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| anyhow::anyhow!("no authorization header"))?
        .to_str()?
        .to_owned();
    let whoami: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/_whoami", gcp.http().base))
        .header(http::header::AUTHORIZATION, authorization)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    anyhow::ensure!(whoami["kind"] == "serviceAccount", "{whoami}");
    Ok(whoami["email"].as_str().unwrap_or_default().to_owned())
}
