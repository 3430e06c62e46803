//! The object stores an issuer's documents are published to (S3 through moto, the Cloud Storage
//! fake, the Blob Storage fake), and the token-exchange fakes reading keys from there: issuer
//! redirects and signing-key rotation. This file holds shared helpers; tests are in submodules.

mod blob;
mod gcs;
mod issuers;
mod python;
mod s3;

use reqwest::StatusCode;

/// A JWT self-signed with a service-account `key` of the GCP fake (what Google's clients send
/// with a service-account key and no token exchange), for `aud`.
pub(crate) fn self_signed(key: &serde_json::Value, sa: &str, aud: &str) -> anyhow::Result<String> {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = key["private_key_id"].as_str().map(str::to_owned);
    let now = jsonwebtoken::get_current_timestamp();
    let claims =
        serde_json::json!({ "iss": sa, "sub": sa, "aud": aud, "iat": now, "exp": now + 600 });
    let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(
        key["private_key"].as_str().unwrap_or_default().as_bytes(),
    )?;
    Ok(jsonwebtoken::encode(&header, &claims, &encoding)?)
}

/// A Cloud Storage token for the GCP fake's service account `sa`.
pub(crate) fn storage_jwt(fake: &passport_e2e::gcp::GcpFake, sa: &str) -> anyhow::Result<String> {
    self_signed(
        &fake.service_account_key(sa)?,
        sa,
        "https://storage.googleapis.com/",
    )
}

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
