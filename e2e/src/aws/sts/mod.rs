//! The stack's STS endpoint: `AssumeRoleWithWebIdentity` for real (token verified against the
//! issuer's JWKS, IAM OIDC provider and role read from moto, trust policy evaluated) and
//! `GetCallerIdentity` for the credentials it issued.

mod sessions;
pub mod validate;

use std::sync::Arc;

use aws_sdk_iam::error::ProvideErrorMetadata as _;
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::Response,
};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use self::sessions::{CallerError, Sessions};
use super::{
    query::{self, Params, escape},
    trust,
};
use crate::oidc::{IssuerRedirects, JwksVerifier, VerifyError};

/// The XML namespace of STS responses.
pub const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
const VERSION: &str = "2011-06-15";
const NOT_AUTHORIZED: &str = "Not authorized to perform sts:AssumeRoleWithWebIdentity";

/// The STS front's state. Cheap to clone.
#[derive(Clone)]
pub struct StsFront {
    inner: Arc<Inner>,
}

struct Inner {
    moto: aws_sdk_iam::Client,
    verifier: JwksVerifier,
    sessions: Sessions,
}

impl StsFront {
    /// `moto_url`: where IAM state lives. `oidc_client`: the client used to fetch issuers'
    /// discovery documents and JWKS (it must trust the issuers' CA). `redirects`: where to fetch
    /// some issuers' keys instead (shared with the other fakes, see [`IssuerRedirects`]).
    pub fn new(moto_url: &str, oidc_client: reqwest::Client, redirects: IssuerRedirects) -> Self {
        Self {
            inner: Arc::new(Inner {
                moto: super::sdk::iam_client(moto_url),
                verifier: JwksVerifier::with_redirects(oidc_client, redirects),
                sessions: Sessions::default(),
            }),
        }
    }

    /// The router (not yet wrapped with fault injection).
    pub fn router(self) -> Router {
        Router::new().fallback(handle).with_state(self)
    }
}

/// A refusal: HTTP status, STS error code, message.
struct Refusal(StatusCode, &'static str, String);

impl Refusal {
    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, code, message.into())
    }
    fn denied() -> Self {
        Self(StatusCode::FORBIDDEN, "AccessDenied", NOT_AUTHORIZED.into())
    }
    fn invalid_token(message: impl Into<String>) -> Self {
        Self::bad("InvalidIdentityToken", message)
    }
    fn into_response(self) -> Response {
        query::error(NAMESPACE, self.0, self.1, &self.2)
    }
}

async fn handle(
    State(front): State<StsFront>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match Params::parse(uri.query(), &body) {
        Ok(params) => params,
        Err(e) => return Refusal::bad("MalformedQueryString", e).into_response(),
    };
    let action = params.get("Action").unwrap_or_default();
    if params.get("Version").is_some_and(|v| v != VERSION) || action.is_empty() {
        return Refusal::bad(
            "InvalidAction",
            format!(
                "Could not find operation {action} for version {}",
                params.get("Version").unwrap_or_default()
            ),
        )
        .into_response();
    }
    let result = match action {
        "AssumeRoleWithWebIdentity" => front.assume_role_with_web_identity(&params).await,
        "GetCallerIdentity" => front.get_caller_identity(&headers, &params),
        other => Err(Refusal::bad(
            "InvalidAction",
            format!("Could not find operation {other} for version {VERSION}"),
        )),
    };
    result.unwrap_or_else(Refusal::into_response)
}

/// What the token and the provider establish about the caller.
struct Identity {
    issuer_host_path: String,
    provider_arn: String,
    subject: String,
    audience: String,
}

impl StsFront {
    async fn assume_role_with_web_identity(&self, params: &Params) -> Result<Response, Refusal> {
        let input =
            validate::assume_input(params).map_err(|m| Refusal::bad("ValidationError", m))?;
        let role = validate::role_arn(&input.role_arn)
            .ok_or_else(|| Refusal::bad("ValidationError", "Request ARN is invalid"))?;
        let identity = self.verify_token(&input.token, &role).await?;

        // STS does not say whether a role exists: a missing role is the same AccessDenied.
        let found = self
            .inner
            .moto
            .get_role()
            .role_name(&role.name)
            .send()
            .await;
        let Some(found) = found.ok().and_then(|o| o.role) else {
            return Err(Refusal::denied());
        };
        if found.arn() != input.role_arn {
            return Err(Refusal::denied());
        }
        let document = decode_policy(found.assume_role_policy_document().unwrap_or_default());
        let policy = trust::Policy::parse(&document).map_err(|_| Refusal::denied())?;
        let request = trust::Request::web_identity(
            &identity.provider_arn,
            &identity.issuer_host_path,
            &identity.subject,
            &identity.audience,
        );
        if policy.evaluate(&request) != trust::Decision::Allow {
            tracing::debug!(role = %input.role_arn, sub = %identity.subject, "trust policy refused");
            return Err(Refusal::denied());
        }

        let max = found
            .max_session_duration()
            .map_or(validate::DEFAULT_DURATION, |m| {
                u32::try_from(m).unwrap_or(validate::DEFAULT_DURATION)
            });
        let duration = input.duration.unwrap_or(validate::DEFAULT_DURATION);
        if duration > max {
            return Err(Refusal::bad(
                "ValidationError",
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
            ));
        }
        let now =
            Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH);
        let session = self.inner.sessions.issue(
            format!(
                "arn:{}:sts::{}:assumed-role/{}/{}",
                role.partition, role.account, role.name, input.session_name
            ),
            format!("{}:{}", found.role_id(), input.session_name),
            role.account.clone(),
            now + SignedDuration::from_secs(i64::from(duration)),
        );
        tracing::debug!(role = %input.role_arn, sub = %identity.subject, "assumed role with web identity");
        let result = format!(
            "<Credentials><AccessKeyId>{}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey><SessionToken>{}</SessionToken><Expiration>{}</Expiration></Credentials>\
             <SubjectFromWebIdentityToken>{}</SubjectFromWebIdentityToken>\
             <AssumedRoleUser><Arn>{}</Arn><AssumedRoleId>{}</AssumedRoleId></AssumedRoleUser>\
             <Provider>{}</Provider><Audience>{}</Audience>",
            session.access_key_id,
            escape(&session.secret_access_key),
            escape(&session.session_token),
            session.expiration,
            escape(&identity.subject),
            escape(&session.arn),
            escape(&session.assumed_role_id),
            escape(&identity.provider_arn),
            escape(&identity.audience),
        );
        Ok(query::success(
            NAMESPACE,
            "AssumeRoleWithWebIdentity",
            Some(&result),
        ))
    }

    /// Finds the IAM OIDC provider for the token's issuer, checks the audience against its client
    /// IDs, then verifies signature, `exp`, `nbf` and `iss` against the issuer's JWKS.
    async fn verify_token(
        &self,
        token: &str,
        role: &validate::RoleArn,
    ) -> Result<Identity, Refusal> {
        let claims = crate::oidc::peek_claims(token)
            .map_err(|_| Refusal::invalid_token("Couldn't parse the web identity token"))?;
        let issuer = claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let no_provider = || {
            Refusal::invalid_token(format!(
                "No OpenIDConnect provider found in your account for {issuer}"
            ))
        };
        let host_path = issuer
            .strip_prefix("https://")
            .map(|h| h.trim_end_matches('/'))
            .filter(|h| !h.is_empty())
            .ok_or_else(no_provider)?;
        let provider_arn = format!(
            "arn:{}:iam::{}:oidc-provider/{host_path}",
            role.partition, role.account
        );
        let provider = match self
            .inner
            .moto
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(&provider_arn)
            .send()
            .await
        {
            Ok(provider) => provider,
            Err(e) if e.code() == Some("NoSuchEntity") => return Err(no_provider()),
            Err(e) => {
                return Err(Refusal(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalFailure",
                    format!(
                        "reading the OIDC provider: {}",
                        e.message().unwrap_or("error")
                    ),
                ));
            }
        };
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let audience = audiences
            .into_iter()
            .find(|a| provider.client_id_list().iter().any(|id| id == a))
            .ok_or_else(|| Refusal::invalid_token("Incorrect token audience"))?
            .to_owned();

        let verified = self
            .inner
            .verifier
            .verify(token, issuer)
            .await
            .map_err(|e| token_refusal(e, &claims))?;
        let subject = verified
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(Identity {
            issuer_host_path: host_path.to_owned(),
            provider_arn,
            subject,
            audience,
        })
    }

    fn get_caller_identity(
        &self,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<Response, Refusal> {
        let session = self
            .inner
            .sessions
            .caller(headers, params, Timestamp::now())
            .map_err(|e| match e {
                CallerError::MissingAuthenticationToken => Refusal(
                    StatusCode::FORBIDDEN,
                    "MissingAuthenticationToken",
                    "Request is missing Authentication Token".into(),
                ),
                CallerError::InvalidClientTokenId => Refusal(
                    StatusCode::FORBIDDEN,
                    "InvalidClientTokenId",
                    "The security token included in the request is invalid.".into(),
                ),
                CallerError::ExpiredToken => Refusal::bad(
                    "ExpiredToken",
                    "The security token included in the request is expired",
                ),
            })?;
        let result = format!(
            "<Arn>{}</Arn><UserId>{}</UserId><Account>{}</Account>",
            escape(&session.arn),
            escape(&session.assumed_role_id),
            escape(&session.account)
        );
        Ok(query::success(
            NAMESPACE,
            "GetCallerIdentity",
            Some(&result),
        ))
    }
}

/// `GetRole` returns the trust policy URL-encoded (RFC 3986), as real IAM does.
fn decode_policy(document: &str) -> String {
    if document.trim_start().starts_with('{') {
        return document.to_owned();
    }
    percent_encoding::percent_decode_str(document)
        .decode_utf8_lossy()
        .into_owned()
}

fn token_refusal(error: VerifyError, claims: &Value) -> Refusal {
    use jsonwebtoken::errors::ErrorKind;
    match error {
        VerifyError::Discovery { .. } => Refusal::bad(
            "IDPCommunicationError",
            "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements",
        ),
        VerifyError::Invalid(e) => match e.kind() {
            ErrorKind::ExpiredSignature => {
                let exp = claims
                    .get("exp")
                    .and_then(Value::as_i64)
                    .unwrap_or_default();
                Refusal::bad(
                    "ExpiredTokenException",
                    format!(
                        "Token expired: current date/time {} must be before the expiration date/time {exp}",
                        Timestamp::now().as_second()
                    ),
                )
            }
            ErrorKind::ImmatureSignature => Refusal::invalid_token("Token used before issued"),
            ErrorKind::InvalidSignature => Refusal::invalid_token("Signature verification failed"),
            ErrorKind::MissingRequiredClaim(claim) => Refusal::invalid_token(format!(
                "The web identity token is missing the {claim} claim"
            )),
            _ => Refusal::invalid_token("The web identity token could not be verified"),
        },
        VerifyError::UnknownKey(_) => Refusal::invalid_token(
            "Couldn't find a key in the identity provider's JWKS matching the token's kid",
        ),
        VerifyError::Malformed(_) => {
            Refusal::invalid_token("Couldn't parse the web identity token")
        }
        VerifyError::UntrustedIssuer(_) => Refusal::invalid_token("Issuer mismatch"),
    }
}
