//! Temporary credentials the STS front issues, and mapping a signed request's access key back to
//! the assumed-role session (for `GetCallerIdentity`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::http::HeaderMap;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use jiff::Timestamp;

use super::super::query::{Params, random_bytes};

/// One assumed-role session.
#[derive(Clone, Debug)]
pub struct Session {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub expiration: Timestamp,
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
    pub arn: String,
    /// `<RoleId>:<session>`.
    pub assumed_role_id: String,
    pub account: String,
}

/// Why a signed request is refused; the variants are STS's error codes.
#[derive(Debug, PartialEq, Eq)]
pub enum CallerError {
    MissingAuthenticationToken,
    InvalidClientTokenId,
    ExpiredToken,
}

/// The sessions issued so far. Cheap to clone; clones share the store.
#[derive(Clone, Default)]
pub struct Sessions {
    by_key: Arc<Mutex<HashMap<String, Session>>>,
}

impl Sessions {
    /// Issues fresh credentials for the session and remembers them.
    pub fn issue(
        &self,
        arn: String,
        assumed_role_id: String,
        account: String,
        expiration: Timestamp,
    ) -> Session {
        let session = Session {
            // Temporary credentials start with ASIA, long-term ones with AKIA.
            access_key_id: format!("ASIA{}", base32(&random_bytes::<10>())),
            secret_access_key: STANDARD.encode(random_bytes::<30>()),
            session_token: STANDARD.encode(random_bytes::<96>()),
            expiration,
            arn,
            assumed_role_id,
            account,
        };
        self.lock()
            .insert(session.access_key_id.clone(), session.clone());
        session
    }

    /// The session whose access key signed the request (SigV4 `Authorization` header or
    /// presigned `X-Amz-Credential`). The signature itself is not verified.
    pub fn caller(
        &self,
        headers: &HeaderMap,
        params: &Params,
        now: Timestamp,
    ) -> Result<Session, CallerError> {
        let from_header = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|auth| {
                let credential = auth.split("Credential=").nth(1)?;
                credential.split('/').next().map(str::to_owned)
            });
        let from_query = params
            .get("X-Amz-Credential")
            .and_then(|c| c.split('/').next().map(str::to_owned));
        let key = from_header
            .or(from_query)
            .ok_or(CallerError::MissingAuthenticationToken)?;
        let session = self
            .lock()
            .get(&key)
            .cloned()
            .ok_or(CallerError::InvalidClientTokenId)?;
        let token = headers
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok())
            .or_else(|| params.get("X-Amz-Security-Token"));
        if token != Some(session.session_token.as_str()) {
            return Err(CallerError::InvalidClientTokenId);
        }
        if now >= session.expiration {
            return Err(CallerError::ExpiredToken);
        }
        Ok(session)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.by_key.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// RFC 4648 base32 without padding: access key ids use `A-Z2-7`.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use axum::{body::Bytes, http::HeaderValue};

    use super::*;

    fn issue(sessions: &Sessions, expiration: Timestamp) -> Session {
        sessions.issue(
            "arn:aws:sts::123456789012:assumed-role/app/s1".into(),
            "AROAEXAMPLE:s1".into(),
            "123456789012".into(),
            expiration,
        )
    }

    fn signed_by(session: &Session, token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("bad"));
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/20261124/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=00",
            session.access_key_id
        );
        headers.insert("authorization", value(&auth));
        headers.insert("x-amz-security-token", value(token));
        headers
    }

    #[test]
    fn credentials_look_like_sts_credentials() {
        let session = issue(&Sessions::default(), Timestamp::now());
        assert_eq!(session.access_key_id.len(), 20);
        assert!(session.access_key_id.starts_with("ASIA"));
        assert_eq!(session.secret_access_key.len(), 40);
    }

    #[test]
    fn callers_are_found_by_access_key_and_token() -> Result<(), String> {
        let sessions = Sessions::default();
        let now = Timestamp::now();
        let later = now + jiff::SignedDuration::from_secs(3600);
        let session = issue(&sessions, later);
        let params = Params::default();
        let found = sessions.caller(&signed_by(&session, &session.session_token), &params, now);
        assert_eq!(found.map(|s| s.arn), Ok(session.arn.clone()));
        assert_eq!(
            sessions
                .caller(&signed_by(&session, "forged"), &params, now)
                .err(),
            Some(CallerError::InvalidClientTokenId)
        );
        assert_eq!(
            sessions
                .caller(&signed_by(&session, &session.session_token), &params, later)
                .err(),
            Some(CallerError::ExpiredToken)
        );
        assert_eq!(
            sessions.caller(&HeaderMap::new(), &params, now).err(),
            Some(CallerError::MissingAuthenticationToken)
        );
        let presigned = Params::parse(
            Some("X-Amz-Credential=AKIAUNKNOWN%2F20261124%2Fus-east-1%2Fsts%2Faws4_request"),
            &Bytes::new(),
        )?;
        assert_eq!(
            sessions.caller(&HeaderMap::new(), &presigned, now).err(),
            Some(CallerError::InvalidClientTokenId)
        );
        Ok(())
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"f"), "MY");
    }
}
