//! `passport-stack` (what `make stack` runs) as a user sees it: it starts every emulator,
//! prints and writes the endpoints, serves them, and stops cleanly on Ctrl-C. With
//! `PASSPORT_E2E_APISERVER=real` the stack runs the real kube-apiserver (`--apiserver real`).

use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, api::ListParams};

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the stack and removes its folder however the test ends.
struct Cleanup {
    child: std::process::Child,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn passport_stack_serves_every_emulator_and_stops_on_ctrl_c() {
    passport_e2e::tls::install_crypto_provider();
    let dir = std::env::temp_dir().join(format!("passport-stack-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let apiserver = match std::env::var(passport_e2e::cluster::APISERVER_ENV).as_deref() {
        Ok("real") => "real",
        _ => "emulated",
    };
    let child = Command::new(env!("CARGO_BIN_EXE_passport-stack"))
        .arg("--dir")
        .arg(&dir)
        .args(["--apiserver", apiserver])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut guard = Cleanup {
        child,
        dir: dir.clone(),
    };
    let child = &mut guard.child;

    // The stack writes stack.env once every emulator answers; the real API server may take as
    // long as the stack itself waits for it on a loaded machine (CI runs the other tests beside).
    let env_file = dir.join("stack.env");
    let patience = passport_e2e::realapi::READY_TIMEOUT + Duration::from_secs(60);
    wait_for("stack.env", patience, || {
        if let Ok(Some(exit)) = child.try_wait() {
            panic!("passport-stack exited ({exit}) before it wrote stack.env");
        }
        std::fs::metadata(&env_file).is_ok_and(|m| m.len() > 0)
    });
    let env = parse_env(&std::fs::read_to_string(&env_file).unwrap());
    for key in [
        "KUBECONFIG",
        "PASSPORT_STACK_CA",
        "PASSPORT_STACK_ISSUER",
        "AWS_ENDPOINT_URL_IAM",
        "AWS_ENDPOINT_URL_STS",
        "PASSPORT_STACK_MOTO",
        "PASSPORT_STACK_GCP",
        "PASSPORT_GCP_IAM_ENDPOINT",
        "PASSPORT_GCP_STS_ENDPOINT",
        "PASSPORT_GCP_IAMCREDENTIALS_ENDPOINT",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "SSL_CERT_FILE",
        "PASSPORT_STACK_AZURE_ARM",
        "AZURE_AUTHORITY_HOST",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "PASSPORT_AZURE_ARM_ENDPOINT",
    ] {
        assert!(
            env.contains_key(key),
            "{key} missing from stack.env: {env:?}"
        );
    }

    // Google application default credentials: a service-account key file for Passport.
    let key: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&env["GOOGLE_APPLICATION_CREDENTIALS"]).unwrap(),
    )
    .unwrap();
    assert_eq!(key["type"], "service_account");
    assert_eq!(
        key["client_email"],
        passport_e2e::stack::GCP_OPERATOR_SERVICE_ACCOUNT
    );
    let roots = std::fs::read_to_string(&env["SSL_CERT_FILE"]).unwrap();
    let ca = std::fs::read_to_string(&env["PASSPORT_STACK_CA"]).unwrap();
    assert!(
        roots.contains(ca.trim()),
        "SSL_CERT_FILE lacks the stack CA"
    );

    // The Kubernetes API answers through the kubeconfig it wrote.
    let kubeconfig =
        kube::config::Kubeconfig::read_from(PathBuf::from(&env["KUBECONFIG"])).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let namespaces = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        namespaces
            .items
            .iter()
            .any(|ns| ns.metadata.name.as_deref() == Some("default"))
    );

    // Each cloud emulator answers over HTTPS with the stack CA.
    let http = passport_e2e::tls::client_trusting(
        &std::fs::read_to_string(&env["PASSPORT_STACK_CA"]).unwrap(),
    )
    .unwrap();
    let pools = http
        .get(format!(
            "{}/v1/projects/my-project/locations/global/workloadIdentityPools",
            env["PASSPORT_STACK_GCP"]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(pools.status(), 200);
    let identity = http
        .get(format!(
            "{}/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/apps/providers/Microsoft.ManagedIdentity/userAssignedIdentities/checkout-mi?api-version=2023-01-31",
            env["PASSPORT_STACK_AZURE_ARM"]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(identity.status(), 401, "ARM wants a bearer token");
    // The operator's service principal from stack.env signs in and reads the seeded identity.
    let token: serde_json::Value = http
        .post(format!(
            "{}{}/oauth2/v2.0/token",
            env["AZURE_AUTHORITY_HOST"], env["AZURE_TENANT_ID"]
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", env["AZURE_CLIENT_ID"].as_str()),
            ("client_secret", env["AZURE_CLIENT_SECRET"].as_str()),
            ("scope", "https://management.azure.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let identity = http
        .get(format!(
            "{}/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/apps/providers/Microsoft.ManagedIdentity/userAssignedIdentities/checkout-mi?api-version=2023-01-31",
            env["PASSPORT_AZURE_ARM_ENDPOINT"]
        ))
        .bearer_auth(token["access_token"].as_str().unwrap_or_default())
        .send()
        .await
        .unwrap();
    assert_eq!(identity.status(), 200, "{token}");
    let discovery = http
        .get(format!(
            "{}/.well-known/openid-configuration",
            env["PASSPORT_STACK_ISSUER"]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(discovery.status(), 200);
    let moto = env["PASSPORT_STACK_MOTO"].clone();
    assert!(reqwest::get(&moto).await.is_ok(), "moto answers");

    // Ctrl-C stops everything, moto included, and the process exits successfully.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "passport-stack did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "passport-stack exited with {exit}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(stdout.contains("KUBECONFIG="), "{stdout}");
    assert!(
        reqwest::get(&moto).await.is_err(),
        "moto still answers after the stack stopped"
    );
    assert!(
        client.apiserver_version().await.is_err(),
        "the {apiserver} API server still answers after the stack stopped"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
