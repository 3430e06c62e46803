//! aws-sdk-iam errors as `CloudError`s: the IAM error code decides the kind, the message is
//! IAM's own.

use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};

use crate::cloud::{Cloud, CloudError, ErrorKind};

/// Maps any aws-sdk-iam error of `operation`.
pub fn map<E>(operation: &'static str, error: SdkError<E>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    match &error {
        SdkError::ServiceError(_) => {
            let code = error.code().unwrap_or("Unknown").to_owned();
            let message = error.message().unwrap_or("no message").to_owned();
            CloudError::new(kind_for(&code, status), Cloud::Aws, operation, message).with_code(code)
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => CloudError::new(
            ErrorKind::Unavailable,
            Cloud::Aws,
            operation,
            format!("IAM could not be reached: {}", source_chain(&error)),
        ),
        SdkError::ResponseError(_) => CloudError::new(
            status.map_or(ErrorKind::Unavailable, kind_for_status),
            Cloud::Aws,
            operation,
            format!("IAM sent an unreadable response: {}", source_chain(&error)),
        ),
        _ => CloudError::new(
            ErrorKind::Invalid,
            Cloud::Aws,
            operation,
            format!("the request could not be built: {}", source_chain(&error)),
        ),
    }
}

fn kind_for(code: &str, status: Option<u16>) -> ErrorKind {
    match code {
        "NoSuchEntity" => ErrorKind::NotFound,
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "UnrecognizedClientException" => ErrorKind::AccessDenied,
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequests" => {
            ErrorKind::Throttled
        }
        "LimitExceeded" => ErrorKind::LimitExceeded,
        "EntityAlreadyExists" | "DeleteConflict" | "ConcurrentModification" => ErrorKind::Conflict,
        "MalformedPolicyDocument"
        | "InvalidInput"
        | "ValidationError"
        | "PolicyNotAttachable"
        | "UnmodifiableEntity" => ErrorKind::Invalid,
        "ServiceFailure" | "ServiceUnavailable" | "InternalFailure" => ErrorKind::Unavailable,
        _ => status.map_or(ErrorKind::Invalid, kind_for_status),
    }
}

fn kind_for_status(status: u16) -> ErrorKind {
    crate::cloud::error::kind_for_status(status)
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_codes_map_to_kinds() {
        assert_eq!(kind_for("NoSuchEntity", Some(404)), ErrorKind::NotFound);
        assert_eq!(kind_for("AccessDenied", Some(403)), ErrorKind::AccessDenied);
        assert_eq!(kind_for("Throttling", Some(400)), ErrorKind::Throttled);
        assert_eq!(
            kind_for("LimitExceeded", Some(409)),
            ErrorKind::LimitExceeded
        );
        assert_eq!(
            kind_for("EntityAlreadyExists", Some(409)),
            ErrorKind::Conflict
        );
        assert_eq!(kind_for("Whatever", Some(503)), ErrorKind::Unavailable);
        assert_eq!(kind_for("Whatever", Some(429)), ErrorKind::Throttled);
    }
}
