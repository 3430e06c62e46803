//! Google's own Python credential loader (google-auth, from the repo-local venv) against the
//! fake: an `external_account` credential configuration with a Kubernetes token file, exchanged
//! at STS and then impersonating a service account. google-auth sends `"delegates": null` and
//! parses `expireTime` with `%Y-%m-%dT%H:%M:%SZ`, so this fails if the fake refuses proto3
//! nulls or prints fractional seconds.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};

use super::*;

const SCRIPT: &str = r#"
import json, sys
from google.auth import identity_pool
from google.auth.transport.requests import Request

credentials = identity_pool.Credentials.from_file(
    sys.argv[1], scopes=["https://www.googleapis.com/auth/cloud-platform"]
)
credentials.refresh(Request())
print(json.dumps({"token": credentials.token, "expiry": credentials.expiry.isoformat()}))
"#;

/// The venv's Python; the venv is made by `e2e/scripts/venv.sh` (as for moto).
fn python() -> anyhow::Result<std::path::PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    ensure!(
        path.exists(),
        "{} not found: run `e2e/scripts/venv.sh` from the repository root to create the Python \
         venv with google-auth",
        path.display()
    );
    Ok(path)
}

#[tokio::test]
async fn google_auth_for_python_exchanges_and_impersonates_against_the_fake() -> anyhow::Result<()>
{
    let python = python()?;
    let env = Env::start(|o| o).await?;
    env.create_pool("pool-1").await?;
    env.create_provider(
        "pool-1",
        "k8s-oidc",
        oidc_provider(env.issuer.url(), json!({ "allowedAudiences": ["gcp-sts"] })),
    )
    .await?;
    env.set_policy(&[&format!(
        "principal://iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/pool-1/subject/system:serviceaccount:team-a:api"
    )])
    .await?;

    let dir = std::env::temp_dir().join(format!(
        "passport-google-auth-{}-{}",
        std::process::id(),
        now()
    ));
    std::fs::create_dir_all(&dir)?;
    let token_file = dir.join("token");
    std::fs::write(&token_file, env.k8s_token("gcp-sts", "team-a", 600)?)?;
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, env.ca.cert_pem())?;
    let config_file = dir.join("credential-configuration.json");
    let endpoints = env.fake.https();
    std::fs::write(
        &config_file,
        serde_json::to_vec(&json!({
            "type": "external_account",
            "audience": audience("pool-1", "k8s-oidc"),
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": endpoints.sts_token,
            "service_account_impersonation_url": endpoints.impersonation_url(SA),
            "credential_source": { "file": token_file, "format": { "type": "text" } },
        }))?,
    )?;

    let run = tokio::process::Command::new(&python)
        .arg("-c")
        .arg(SCRIPT)
        .arg(&config_file)
        .env("REQUESTS_CA_BUNDLE", &ca_file)
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run).await;
    std::fs::remove_dir_all(&dir)?;
    let output = output.context("google-auth did not finish in 60 s")??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success(), "google-auth failed: {stderr}");
    let answer: Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "google-auth printed {:?}",
            String::from_utf8_lossy(&output.stdout)
        )
    })?;

    // The token google-auth ended with is the impersonated service account's.
    let token = answer["token"].as_str().unwrap_or_default();
    let (status, me) = env.whoami(token).await?;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["principal"], format!("serviceAccount:{SA}"));
    let expiry = answer["expiry"].as_str().unwrap_or_default();
    assert!(!expiry.contains('.'), "expiry {expiry:?} has a fraction");
    Ok(())
}
