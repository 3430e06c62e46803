//! S3 through the stack's HTTPS front to moto, with the real aws-sdk-s3 (path-style) and with
//! unsigned reads as a cloud fetching an issuer's documents makes them.

use aws_sdk_s3::{
    config::{BehaviorVersion, Region},
    error::ProvideErrorMetadata as _,
    primitives::ByteStream,
};
use passport_e2e::{
    aws::{self, Aws},
    tls::Ca,
};
use reqwest::StatusCode;
use serde_json::json;

use super::Answer;

const DOC: &[u8] = br#"{"issuer":"https://oidc.example.test/c1"}"#;
const KEY: &str = ".well-known/openid-configuration";

async fn start() -> anyhow::Result<(Ca, Aws, aws_sdk_s3::Client)> {
    let ca = Ca::new()?;
    let aws = Aws::start(&ca).await?;
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(aws.s3_https_url())
        .region(Region::new(aws::sdk::REGION))
        .credentials_provider(aws::sdk::test_credentials())
        .force_path_style(true)
        .http_client(aws::sdk::https_client_trusting(&ca.cert_pem())?)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    Ok((ca, aws, aws_sdk_s3::Client::from_conf(config)))
}

async fn put_doc(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<()> {
    s3.put_object()
        .bucket(bucket)
        .key(KEY)
        .body(ByteStream::from_static(DOC))
        .content_type("application/json")
        .cache_control("public, max-age=60")
        .send()
        .await?;
    Ok(())
}

#[tokio::test]
async fn s3_objects_keep_their_content_type_and_cache_control() -> anyhow::Result<()> {
    let (_ca, _aws, s3) = start().await?;
    s3.create_bucket().bucket("issuer").send().await?;
    put_doc(&s3, "issuer").await?;
    let got = s3.get_object().bucket("issuer").key(KEY).send().await?;
    assert_eq!(got.content_type(), Some("application/json"));
    assert_eq!(got.cache_control(), Some("public, max-age=60"));
    assert_eq!(got.body.collect().await?.into_bytes().as_ref(), DOC);
    let head = s3.head_object().bucket("issuer").key(KEY).send().await?;
    assert_eq!(head.content_length(), Some(DOC.len() as i64));
    assert_eq!(head.cache_control(), Some("public, max-age=60"));
    let missing = s3.head_object().bucket("issuer").key("nope").send().await;
    assert!(missing.is_err());
    Ok(())
}

#[tokio::test]
async fn anonymous_s3_reads_need_a_bucket_policy_that_allows_them() -> anyhow::Result<()> {
    let (ca, aws, s3) = start().await?;
    let http = ca.client()?;
    s3.create_bucket().bucket("issuer").send().await?;
    put_doc(&s3, "issuer").await?;
    let url = format!("{}/issuer/{KEY}", aws.s3_https_url());

    let refused = Answer::of(http.get(&url)).await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.text().contains("<Code>AccessDenied</Code>"),
        "{}",
        refused.text()
    );

    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::issuer/*",
        }],
    });
    s3.put_bucket_policy()
        .bucket("issuer")
        .policy(policy.to_string())
        .send()
        .await?;
    let read = Answer::of(http.get(&url)).await?;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, DOC);
    assert_eq!(read.header("content-type"), "application/json");
    assert_eq!(read.header("cache-control"), "public, max-age=60");
    let head = Answer::of(http.head(&url)).await?;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), DOC.len().to_string());

    let missing = Answer::of(http.get(format!("{}/issuer/nope", aws.s3_https_url()))).await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.text().contains("<Code>NoSuchKey</Code>"));
    Ok(())
}

#[tokio::test]
async fn s3_faults_answer_in_s3s_error_shape() -> anyhow::Result<()> {
    let (_ca, aws, s3) = start().await?;
    aws.s3_faults()
        .fail_next(1, StatusCode::SERVICE_UNAVAILABLE);
    let failed = s3.create_bucket().bucket("issuer").send().await;
    let code = failed.err().and_then(|e| e.code().map(str::to_owned));
    assert_eq!(code.as_deref(), Some("SlowDown"));
    s3.create_bucket().bucket("issuer").send().await?;
    Ok(())
}
