//! Input validation of `AssumeRoleWithWebIdentity` the way STS reports it: every violated
//! constraint in one `ValidationError` ("N validation errors detected: ...").

use super::super::query::Params;

/// The validated inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssumeInput {
    pub role_arn: String,
    pub session_name: String,
    pub token: String,
    pub duration: Option<u32>,
}

/// The parts of a role ARN STS needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleArn {
    pub partition: String,
    pub account: String,
    /// The role name, without its path: what `GetRole` takes and the session ARN names.
    pub name: String,
}

pub const MIN_DURATION: u32 = 900;
pub const MAX_DURATION: u32 = 43_200;
pub const DEFAULT_DURATION: u32 = 3_600;

/// Checks the parameters' presence, lengths and patterns; `Err` is the `ValidationError` message.
pub fn assume_input(params: &Params) -> Result<AssumeInput, String> {
    let mut errors = Vec::new();
    let role_arn = required(params, "RoleArn", "roleArn", &mut errors);
    if let Some(arn) = role_arn {
        length(arn, "roleArn", 20, 2048, true, &mut errors);
    }
    let session_name = required(params, "RoleSessionName", "roleSessionName", &mut errors);
    if let Some(name) = session_name {
        length(name, "roleSessionName", 2, 64, true, &mut errors);
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
        {
            errors.push(format!(
                "Value '{name}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
            ));
        }
    }
    let token = required(params, "WebIdentityToken", "webIdentityToken", &mut errors);
    if let Some(token) = token {
        // Never echo the token itself.
        length(token, "webIdentityToken", 4, 20_000, false, &mut errors);
    }
    let duration = match params.get("DurationSeconds") {
        None => None,
        Some(raw) => match raw.parse::<u32>() {
            Ok(d) if d < MIN_DURATION => {
                errors.push(format!(
                    "Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to {MIN_DURATION}"
                ));
                None
            }
            Ok(d) if d > MAX_DURATION => {
                errors.push(format!(
                    "Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to {MAX_DURATION}"
                ));
                None
            }
            Ok(d) => Some(d),
            Err(_) => {
                errors.push(format!(
                    "Value '{raw}' at 'durationSeconds' failed to satisfy constraint: Member must be an integer"
                ));
                None
            }
        },
    };
    match (role_arn, session_name, token) {
        (Some(role_arn), Some(session_name), Some(token)) if errors.is_empty() => Ok(AssumeInput {
            role_arn: role_arn.to_owned(),
            session_name: session_name.to_owned(),
            token: token.to_owned(),
            duration,
        }),
        _ => Err(summary(&errors)),
    }
}

/// Splits `arn:<partition>:iam::<account>:role/<path/><name>`.
pub fn role_arn(arn: &str) -> Option<RoleArn> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
    let account_ok = account.len() == 12 && account.chars().all(|c| c.is_ascii_digit());
    (account_ok && !name.is_empty() && partition.starts_with("aws")).then(|| RoleArn {
        partition: partition.to_owned(),
        account: account.to_owned(),
        name: name.to_owned(),
    })
}

fn required<'a>(
    params: &'a Params,
    name: &str,
    member: &str,
    errors: &mut Vec<String>,
) -> Option<&'a str> {
    let value = params.get(name);
    if value.is_none() {
        errors.push(format!(
            "Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ));
    }
    value
}

fn length(value: &str, member: &str, min: usize, max: usize, echo: bool, errors: &mut Vec<String>) {
    let len = value.chars().count();
    let shown = if echo {
        format!("Value '{value}' at")
    } else {
        "Value at".to_owned()
    };
    if len < min {
        errors.push(format!(
            "{shown} '{member}' failed to satisfy constraint: Member must have length greater than or equal to {min}"
        ));
    } else if len > max {
        errors.push(format!(
            "{shown} '{member}' failed to satisfy constraint: Member must have length less than or equal to {max}"
        ));
    }
}

fn summary(errors: &[String]) -> String {
    let n = errors.len();
    let noun = if n == 1 { "error" } else { "errors" };
    format!("{n} validation {noun} detected: {}", errors.join("; "))
}

#[cfg(test)]
mod tests {
    use axum::body::Bytes;

    use super::*;

    fn params(query: &str) -> Params {
        match Params::parse(Some(query), &Bytes::new()) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    const OK: &str =
        "RoleArn=arn:aws:iam::123456789012:role/app&RoleSessionName=s1&WebIdentityToken=abcd";

    #[test]
    fn valid_input_passes() {
        let input = assume_input(&params(&format!("{OK}&DurationSeconds=900")));
        assert_eq!(input.map(|i| i.duration), Ok(Some(900)));
        assert_eq!(assume_input(&params(OK)).map(|i| i.duration), Ok(None));
    }

    #[test]
    fn violations_are_reported_like_sts() {
        let cases = [
            (
                "RoleArn=arn:aws:iam::123456789012:role/app&WebIdentityToken=abcd",
                "1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null",
            ),
            (
                "RoleArn=arn:aws:iam::123456789012:role/app&RoleSessionName=bad%20name&WebIdentityToken=abcd",
                "1 validation error detected: Value 'bad name' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*",
            ),
            (
                "RoleArn=short&RoleSessionName=x&WebIdentityToken=abcd&DurationSeconds=899",
                "3 validation errors detected: Value 'short' at 'roleArn' failed to satisfy constraint: Member must have length greater than or equal to 20; Value 'x' at 'roleSessionName' failed to satisfy constraint: Member must have length greater than or equal to 2; Value '899' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900",
            ),
            (
                "RoleArn=arn:aws:iam::123456789012:role/app&RoleSessionName=s1&WebIdentityToken=abc&DurationSeconds=43201",
                "2 validation errors detected: Value at 'webIdentityToken' failed to satisfy constraint: Member must have length greater than or equal to 4; Value '43201' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to 43200",
            ),
        ];
        for (query, want) in cases {
            assert_eq!(
                assume_input(&params(query)),
                Err(want.to_owned()),
                "{query}"
            );
        }
    }

    #[test]
    fn role_arns_are_split() {
        assert_eq!(
            role_arn("arn:aws:iam::123456789012:role/team/a/app"),
            Some(RoleArn {
                partition: "aws".into(),
                account: "123456789012".into(),
                name: "app".into()
            })
        );
        for bad in [
            "arn:aws:iam::12345:role/app",
            "arn:aws:s3:::bucket/role/app",
            "arn:aws:iam::123456789012:user/app",
            "arn:aws:iam::123456789012:role/",
            "role/app",
        ] {
            assert_eq!(role_arn(bad), None, "{bad}");
        }
    }
}
