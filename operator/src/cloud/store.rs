//! The object stores an issuer is published to (`spec.issuer.publish`): S3 through aws-sdk-s3,
//! Google Cloud Storage through its JSON API and Azure Blob through its REST API (reqwest, with
//! the same Google and Azure credentials as the rest of the operator: no maintained crate covers
//! the two uploads without pulling a second HTTP stack in). Every call goes through the
//! [`Caller`], so it is retried with backoff and counted as `PutObject`/`GetObject` of its cloud.

use std::{collections::HashMap, sync::Mutex};

use async_trait::async_trait;
use google_cloud_auth::credentials::Credentials as GoogleCredentials;
use passport_crds::{Cloud, federated_trust::IssuerPublish};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{
    Access, Calls, CloudConfig, CloudError, ErrorKind, azure::TokenSource, error::kind_for_status,
    gcp::rest::auth_headers, retry::Caller,
};

/// Where an issuer is published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bucket {
    S3 {
        bucket: String,
        region: String,
    },
    Gcs {
        bucket: String,
    },
    AzureBlob {
        account_url: String,
        container: String,
    },
}

impl Bucket {
    /// The bucket of a publish block, and the key prefix of its objects.
    pub fn of(publish: &IssuerPublish) -> Option<(Self, String)> {
        if let Some(s3) = &publish.s3 {
            return Some((
                Self::S3 {
                    bucket: s3.bucket.clone(),
                    region: s3.region.clone(),
                },
                s3.prefix.clone(),
            ));
        }
        if let Some(gcs) = &publish.gcs {
            return Some((
                Self::Gcs {
                    bucket: gcs.bucket.clone(),
                },
                gcs.prefix.clone(),
            ));
        }
        publish.azure_blob.as_ref().map(|blob| {
            (
                Self::AzureBlob {
                    account_url: blob.account_url.trim_end_matches('/').to_owned(),
                    container: blob.container.clone(),
                },
                blob.prefix.clone(),
            )
        })
    }

    pub fn cloud(&self) -> Cloud {
        match self {
            Self::S3 { .. } => Cloud::Aws,
            Self::Gcs { .. } => Cloud::Gcp,
            Self::AzureBlob { .. } => Cloud::Azure,
        }
    }

    /// For messages: `s3://acme-oidc`, `gs://acme-oidc`, `<accountUrl>/<container>`.
    pub fn describe(&self) -> String {
        match self {
            Self::S3 { bucket, .. } => format!("s3://{bucket}"),
            Self::Gcs { bucket } => format!("gs://{bucket}"),
            Self::AzureBlob {
                account_url,
                container,
            } => format!("{account_url}/{container}"),
        }
    }
}

/// One object to write.
pub struct StoredObject<'a> {
    pub key: &'a str,
    pub body: &'a [u8],
    pub content_type: &'a str,
    pub cache_control: &'a str,
}

/// Reads and writes an issuer's objects.
#[async_trait]
pub trait IssuerStores: Send + Sync {
    /// The object's bytes; None when it does not exist.
    async fn read(&self, bucket: &Bucket, key: &str) -> Result<Option<Vec<u8>>, CloudError>;
    /// Creates or replaces the object.
    async fn write(&self, bucket: &Bucket, object: &StoredObject<'_>) -> Result<(), CloudError>;
    /// The bucket's own public HTTPS URL, without a trailing slash (the key prefix goes after it).
    fn public_base(&self, bucket: &Bucket) -> String;
}

/// Characters escaped in a GCS object name inside a URL path (`/` included: `%2F`).
const NAME: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Characters escaped in an S3 key or blob name path (`/` kept).
const PATH: &AsciiSet = &NAME.remove(b'/');

/// The stores `passport run` builds: each cloud's when it has credentials for it.
pub struct Stores {
    s3: Option<S3>,
    gcs: Option<Gcs>,
    blob: Option<Blob>,
}

impl Stores {
    pub fn new(
        config: &CloudConfig,
        calls: &Calls,
        aws: Option<aws_config::SdkConfig>,
        google: Option<GoogleCredentials>,
        azure: Option<super::azure::Credentials>,
    ) -> anyhow::Result<Self> {
        let http = config.http_client()?;
        Ok(Self {
            s3: aws.map(|sdk| S3 {
                sdk,
                endpoint: config.aws_s3_endpoint.clone(),
                clients: Mutex::new(HashMap::new()),
                caller: Caller::new(Cloud::Aws, calls.clone(), config.backoff),
            }),
            gcs: google.map(|credentials| Gcs {
                http: http.clone(),
                // STORAGE_EMULATOR_HOST may be a bare host:port (plain HTTP to Google's clients).
                base: match config.gcs_endpoint.trim_end_matches('/') {
                    base if base.contains("://") => base.to_owned(),
                    host => format!("http://{host}"),
                },
                credentials,
                caller: Caller::new(Cloud::Gcp, calls.clone(), config.backoff),
            }),
            blob: azure.map(|credentials| Blob {
                http: http.clone(),
                tokens: TokenSource::for_scope(credentials, http, STORAGE_SCOPE),
                caller: Caller::new(Cloud::Azure, calls.clone(), config.backoff),
            }),
        })
    }

    fn unconfigured(bucket: &Bucket) -> CloudError {
        CloudError::new(
            ErrorKind::AccessDenied,
            bucket.cloud(),
            "Configure",
            format!(
                "Passport runs without {} credentials, so it cannot publish to {}: give it \
                 credentials for that cloud, then restart it",
                bucket.cloud(),
                bucket.describe()
            ),
        )
    }
}

#[async_trait]
impl IssuerStores for Stores {
    async fn read(&self, bucket: &Bucket, key: &str) -> Result<Option<Vec<u8>>, CloudError> {
        match (bucket, &self.s3, &self.gcs, &self.blob) {
            (Bucket::S3 { bucket, region }, Some(s3), _, _) => s3.read(bucket, region, key).await,
            (Bucket::Gcs { bucket }, _, Some(gcs), _) => gcs.read(bucket, key).await,
            (
                Bucket::AzureBlob {
                    account_url,
                    container,
                },
                _,
                _,
                Some(blob),
            ) => {
                blob.read(&format!("{account_url}/{container}/{}", encode_path(key)))
                    .await
            }
            _ => Err(Self::unconfigured(bucket)),
        }
    }

    async fn write(&self, bucket: &Bucket, object: &StoredObject<'_>) -> Result<(), CloudError> {
        match (bucket, &self.s3, &self.gcs, &self.blob) {
            (Bucket::S3 { bucket, region }, Some(s3), _, _) => {
                s3.write(bucket, region, object).await
            }
            (Bucket::Gcs { bucket }, _, Some(gcs), _) => gcs.write(bucket, object).await,
            (
                Bucket::AzureBlob {
                    account_url,
                    container,
                },
                _,
                _,
                Some(blob),
            ) => {
                let url = format!("{account_url}/{container}/{}", encode_path(object.key));
                blob.write(&url, object).await
            }
            _ => Err(Self::unconfigured(bucket)),
        }
    }

    fn public_base(&self, bucket: &Bucket) -> String {
        match bucket {
            Bucket::S3 { bucket, region } => {
                match self.s3.as_ref().and_then(|s3| s3.endpoint.as_deref()) {
                    Some(endpoint) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
                    // A dotted name breaks the virtual-hosted certificate: path style then.
                    None if bucket.contains('.') => {
                        format!("https://s3.{region}.amazonaws.com/{bucket}")
                    }
                    None => format!("https://{bucket}.s3.{region}.amazonaws.com"),
                }
            }
            Bucket::Gcs { bucket } => {
                let base = self.gcs.as_ref().map_or(DEFAULT_GCS, |g| g.base.as_str());
                format!("{base}/{bucket}")
            }
            Bucket::AzureBlob {
                account_url,
                container,
            } => format!("{account_url}/{container}"),
        }
    }
}

fn encode_path(key: &str) -> String {
    utf8_percent_encode(key, PATH).to_string()
}

fn unreachable(cloud: Cloud, operation: &'static str, error: impl std::fmt::Display) -> CloudError {
    CloudError::new(
        ErrorKind::Unavailable,
        cloud,
        operation,
        format!("cannot reach the object store: {error}"),
    )
}

fn refused(cloud: Cloud, operation: &'static str, status: u16, body: &str) -> CloudError {
    let mut message = body.trim().to_owned();
    if message.len() > 500 {
        message.truncate(message.floor_char_boundary(500));
    }
    CloudError::new(
        kind_for_status(status),
        cloud,
        operation,
        format!("HTTP {status}: {message}"),
    )
    .with_code(status.to_string())
}

/// S3: one client per region, from aws-config's chain (`AWS_ENDPOINT_URL_S3` included).
struct S3 {
    sdk: aws_config::SdkConfig,
    /// An endpoint override (an emulator): path-style addressing then.
    endpoint: Option<String>,
    clients: Mutex<HashMap<String, aws_sdk_s3::Client>>,
    caller: Caller,
}

impl S3 {
    fn client(&self, region: &str) -> aws_sdk_s3::Client {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(region.to_owned())
            .or_insert_with(|| {
                let mut builder = aws_sdk_s3::config::Builder::from(&self.sdk)
                    .region(aws_sdk_s3::config::Region::new(region.to_owned()));
                if let Some(endpoint) = &self.endpoint {
                    builder = builder.endpoint_url(endpoint).force_path_style(true);
                }
                aws_sdk_s3::Client::from_conf(builder.build())
            })
            .clone()
    }

    async fn read(
        &self,
        bucket: &str,
        region: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, CloudError> {
        let client = self.client(region);
        self.caller
            .run("GetObject", Access::Read, || async {
                match client.get_object().bucket(bucket).key(key).send().await {
                    Ok(answer) => answer
                        .body
                        .collect()
                        .await
                        .map(|bytes| Some(bytes.into_bytes().to_vec()))
                        .map_err(|e| unreachable(Cloud::Aws, "GetObject", e)),
                    Err(error) => {
                        if error.as_service_error().is_some_and(|e| e.is_no_such_key()) {
                            return Ok(None);
                        }
                        Err(s3_error("GetObject", &error))
                    }
                }
            })
            .await
    }

    async fn write(
        &self,
        bucket: &str,
        region: &str,
        object: &StoredObject<'_>,
    ) -> Result<(), CloudError> {
        let client = self.client(region);
        self.caller
            .run("PutObject", Access::Write, || async {
                client
                    .put_object()
                    .bucket(bucket)
                    .key(object.key)
                    .content_type(object.content_type)
                    .cache_control(object.cache_control)
                    .body(object.body.to_vec().into())
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|error| s3_error("PutObject", &error))
            })
            .await
    }
}

fn s3_error<E, R>(operation: &'static str, error: &aws_sdk_s3::error::SdkError<E, R>) -> CloudError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::DisplayErrorContext;
    let Some(service) = error.as_service_error() else {
        return unreachable(Cloud::Aws, operation, DisplayErrorContext(error));
    };
    let code = service.code().unwrap_or("Unknown").to_owned();
    let kind = match code.as_str() {
        "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken" => {
            ErrorKind::AccessDenied
        }
        "NoSuchBucket" => ErrorKind::NotFound,
        "SlowDown" | "Throttling" => ErrorKind::Throttled,
        "InternalError" | "ServiceUnavailable" => ErrorKind::Unavailable,
        _ => ErrorKind::Invalid,
    };
    let message = service.message().unwrap_or("").to_owned();
    CloudError::new(kind, Cloud::Aws, operation, format!("{code}: {message}")).with_code(code)
}

const DEFAULT_GCS: &str = "https://storage.googleapis.com";

/// Google Cloud Storage through its JSON API.
struct Gcs {
    http: reqwest::Client,
    /// `https://storage.googleapis.com` or `STORAGE_EMULATOR_HOST`.
    base: String,
    credentials: GoogleCredentials,
    caller: Caller,
}

impl Gcs {
    async fn read(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, CloudError> {
        let url = format!(
            "{}/storage/v1/b/{}/o/{}?alt=media",
            self.base,
            utf8_percent_encode(bucket, NAME),
            utf8_percent_encode(key, NAME)
        );
        self.caller
            .run("GetObject", Access::Read, || async {
                let headers = auth_headers(&self.credentials, "GetObject").await?;
                let response = self
                    .http
                    .get(&url)
                    .headers(headers)
                    .send()
                    .await
                    .map_err(|e| unreachable(Cloud::Gcp, "GetObject", e))?;
                let status = response.status().as_u16();
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| unreachable(Cloud::Gcp, "GetObject", e))?;
                match status {
                    200 => Ok(Some(body.to_vec())),
                    404 => Ok(None),
                    _ => Err(refused(
                        Cloud::Gcp,
                        "GetObject",
                        status,
                        &String::from_utf8_lossy(&body),
                    )),
                }
            })
            .await
    }

    /// A multipart upload: the object's metadata (name, content type, cache control) and its
    /// bytes in one request.
    async fn write(&self, bucket: &str, object: &StoredObject<'_>) -> Result<(), CloudError> {
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=multipart",
            self.base,
            utf8_percent_encode(bucket, NAME)
        );
        let metadata = serde_json::json!({
            "name": object.key,
            "contentType": object.content_type,
            "cacheControl": object.cache_control,
        });
        let boundary = "passport-issuer-object";
        let mut body = format!(
            "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n--{boundary}\r\nContent-Type: {}\r\n\r\n",
            object.content_type
        )
        .into_bytes();
        body.extend_from_slice(object.body);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        self.caller
            .run("PutObject", Access::Write, || async {
                let headers = auth_headers(&self.credentials, "PutObject").await?;
                let response = self
                    .http
                    .post(&url)
                    .headers(headers)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        format!("multipart/related; boundary={boundary}"),
                    )
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| unreachable(Cloud::Gcp, "PutObject", e))?;
                let status = response.status().as_u16();
                if (200..300).contains(&status) {
                    return Ok(());
                }
                let text = response.text().await.unwrap_or_default();
                Err(refused(Cloud::Gcp, "PutObject", status, &text))
            })
            .await
    }
}

/// The scope of Azure Storage tokens.
const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
/// The Blob service API version Passport speaks.
const BLOB_API_VERSION: &str = "2023-11-03";

/// Azure Blob through its REST API, with Entra tokens for Azure Storage.
struct Blob {
    http: reqwest::Client,
    tokens: TokenSource,
    caller: Caller,
}

impl Blob {
    async fn read(&self, url: &str) -> Result<Option<Vec<u8>>, CloudError> {
        let token = self.tokens.token(&self.caller).await?;
        self.caller
            .run("GetBlob", Access::Read, || async {
                let response = self
                    .http
                    .get(url)
                    .bearer_auth(token.expose())
                    .header("x-ms-version", BLOB_API_VERSION)
                    .send()
                    .await
                    .map_err(|e| unreachable(Cloud::Azure, "GetBlob", e))?;
                let status = response.status().as_u16();
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| unreachable(Cloud::Azure, "GetBlob", e))?;
                match status {
                    200 => Ok(Some(body.to_vec())),
                    404 => Ok(None),
                    _ => Err(refused(
                        Cloud::Azure,
                        "GetBlob",
                        status,
                        &String::from_utf8_lossy(&body),
                    )),
                }
            })
            .await
    }

    async fn write(&self, url: &str, object: &StoredObject<'_>) -> Result<(), CloudError> {
        let token = self.tokens.token(&self.caller).await?;
        self.caller
            .run("PutBlob", Access::Write, || async {
                let response = self
                    .http
                    .put(url)
                    .bearer_auth(token.expose())
                    .header("x-ms-version", BLOB_API_VERSION)
                    .header("x-ms-blob-type", "BlockBlob")
                    .header("x-ms-blob-content-type", object.content_type)
                    .header("x-ms-blob-cache-control", object.cache_control)
                    .header(reqwest::header::CONTENT_TYPE, object.content_type)
                    .body(object.body.to_vec())
                    .send()
                    .await
                    .map_err(|e| unreachable(Cloud::Azure, "PutBlob", e))?;
                let status = response.status().as_u16();
                if (200..300).contains(&status) {
                    return Ok(());
                }
                let text = response.text().await.unwrap_or_default();
                Err(refused(Cloud::Azure, "PutBlob", status, &text))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_follow_each_clouds_addressing() {
        let stores = Stores {
            s3: None,
            gcs: None,
            blob: None,
        };
        let s3 = |bucket: &str| Bucket::S3 {
            bucket: bucket.to_owned(),
            region: "eu-west-1".to_owned(),
        };
        assert_eq!(
            stores.public_base(&s3("acme-oidc")),
            "https://acme-oidc.s3.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            stores.public_base(&s3("oidc.acme.com")),
            "https://s3.eu-west-1.amazonaws.com/oidc.acme.com"
        );
        assert_eq!(
            stores.public_base(&Bucket::Gcs {
                bucket: "acme".to_owned()
            }),
            "https://storage.googleapis.com/acme"
        );
        assert_eq!(
            stores.public_base(&Bucket::AzureBlob {
                account_url: "https://acme.blob.core.windows.net".to_owned(),
                container: "oidc".to_owned()
            }),
            "https://acme.blob.core.windows.net/oidc"
        );
        assert_eq!(
            encode_path(".well-known/openid-configuration"),
            ".well-known/openid-configuration"
        );
        assert_eq!(
            utf8_percent_encode("prod/.well-known/openid-configuration", NAME).to_string(),
            "prod%2F.well-known%2Fopenid-configuration"
        );
    }

    #[tokio::test]
    async fn a_cloud_without_credentials_says_so_and_names_the_bucket() {
        let stores = Stores {
            s3: None,
            gcs: None,
            blob: None,
        };
        let bucket = Bucket::Gcs {
            bucket: "acme".to_owned(),
        };
        let error = stores.read(&bucket, "x").await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::AccessDenied);
        assert!(error.to_string().contains("gs://acme"), "{error}");
    }
}
