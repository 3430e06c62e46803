//! Google's and Microsoft's own Python storage clients (google-cloud-storage, azure-storage-blob,
//! from the repo-local venv) against the Cloud Storage and Blob Storage fakes: bucket and
//! container creation, an upload with Content-Type and Cache-Control, reading the properties
//! back. They fail if the fakes' JSON, XML or headers are not what those clients parse.

use std::{path::Path, sync::Arc};

use anyhow::{Context as _, ensure};
use passport_e2e::{
    azure::{AzureFake, AzureOptions, STORAGE_SCOPE},
    gcp::{GcpFake, GcpOptions},
    tls::Ca,
};
use serde_json::Value;

const GCS_SCRIPT: &str = r#"
import json, sys
from google.cloud import storage
from google.oauth2.credentials import Credentials

client = storage.Client(project="demo-project", credentials=Credentials(token=sys.argv[1]))
bucket = client.create_bucket("py-issuer")
blob = bucket.blob("c1/.well-known/openid-configuration")
blob.cache_control = "public, max-age=60"
blob.upload_from_string(b'{"issuer":"x"}', content_type="application/json")
got = bucket.get_blob("c1/.well-known/openid-configuration")
print(json.dumps({
    "contentType": got.content_type, "cacheControl": got.cache_control, "size": got.size,
    "data": got.download_as_bytes().decode(),
}))
"#;

const BLOB_SCRIPT: &str = r#"
import json, sys, time
from azure.core.credentials import AccessToken
from azure.storage.blob import BlobServiceClient, ContentSettings

class Token:
    def get_token(self, *scopes, **kwargs):
        return AccessToken(sys.argv[2], int(time.time()) + 3600)

service = BlobServiceClient(account_url=sys.argv[1], credential=Token(), connection_verify=sys.argv[3])
container = service.create_container("pyissuer", public_access="blob")
container.upload_blob(
    "c1/openid/v1/jwks", b'{"keys":[]}',
    content_settings=ContentSettings(content_type="application/json", cache_control="max-age=60"),
)
props = container.get_blob_client("c1/openid/v1/jwks").get_blob_properties()
print(json.dumps({
    "contentType": props.content_settings.content_type,
    "cacheControl": props.content_settings.cache_control,
    "size": props.size, "blobType": props.blob_type.value,
}))
"#;

fn python() -> anyhow::Result<std::path::PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    ensure!(
        path.exists(),
        "{} not found: run `e2e/scripts/venv.sh` from the repository root",
        path.display()
    );
    Ok(path)
}

async fn run(script: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Value> {
    let out = tokio::process::Command::new(python()?)
        .arg("-c")
        .arg(script)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .with_context(|| format!("python printed {stdout}"))
}

/// The stack CA in a file for Python's `REQUESTS_CA_BUNDLE`, removed when dropped.
struct CaFile(std::path::PathBuf);

impl CaFile {
    fn display(&self) -> std::path::Display<'_> {
        self.0.display()
    }
}

impl Drop for CaFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn ca_file(ca: &Ca, name: &str) -> anyhow::Result<CaFile> {
    let path = std::env::temp_dir().join(format!("passport-{name}-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&path, ca.cert_pem())?;
    Ok(CaFile(path))
}

#[tokio::test]
async fn google_cloud_storage_for_python_uploads_and_reads_back() -> anyhow::Result<()> {
    const SA: &str = "publisher@demo-project.iam.gserviceaccount.com";
    let ca = Arc::new(Ca::new()?);
    let fake = GcpFake::start(
        GcpOptions::new(ca.clone())
            .project("demo-project", "1")
            .service_account(SA),
    )
    .await?;
    let token = super::storage_jwt(&fake, SA)?;
    let ca_file = ca_file(&ca, "gcs")?;
    let ca_path = ca_file.display().to_string();
    let url = fake.storage_url();
    let got = run(
        GCS_SCRIPT,
        &[&token],
        &[
            ("STORAGE_EMULATOR_HOST", &url),
            ("REQUESTS_CA_BUNDLE", &ca_path),
        ],
    )
    .await?;
    assert_eq!(got["contentType"], "application/json");
    assert_eq!(got["cacheControl"], "public, max-age=60");
    assert_eq!(got["size"], 14);
    assert_eq!(got["data"], r#"{"issuer":"x"}"#);
    Ok(())
}

#[tokio::test]
async fn azure_storage_blob_for_python_uploads_and_reads_back() -> anyhow::Result<()> {
    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let ca = Arc::new(Ca::new()?);
    let fake = AzureFake::start(
        AzureOptions::new(ca.clone())
            .service_principal(TENANT, "client-1", "secret-1")
            .storage_account("passportdev"),
    )
    .await?;
    let body: Value = ca
        .client()?
        .post(fake.token_url(TENANT))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "client-1"),
            ("client_secret", "secret-1"),
            ("scope", STORAGE_SCOPE),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = body["access_token"].as_str().unwrap_or_default();
    let ca_path = ca_file(&ca, "blob")?;
    let got = run(
        BLOB_SCRIPT,
        &[
            &fake.blob_account_url("passportdev"),
            token,
            &ca_path.display().to_string(),
        ],
        &[],
    )
    .await?;
    assert_eq!(got["contentType"], "application/json");
    assert_eq!(got["cacheControl"], "max-age=60");
    assert_eq!(got["size"], 11);
    assert_eq!(got["blobType"], "BlockBlob");
    Ok(())
}
