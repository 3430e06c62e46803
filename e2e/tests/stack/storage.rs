//! The object stores an issuer's documents are published to (S3 through moto, the Cloud Storage
//! fake, the Blob Storage fake), and the token-exchange fakes reading keys from there: issuer
//! redirects and signing-key rotation. This file holds shared helpers; tests are in submodules.

mod blob;
mod gcs;
mod issuers;
mod python;
mod s3;

use reqwest::StatusCode;

/// Status, headers and body of a response.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub async fn of(request: reqwest::RequestBuilder) -> anyhow::Result<Self> {
        let response = request.send().await?;
        Ok(Self {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.bytes().await?.to_vec(),
        })
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}
