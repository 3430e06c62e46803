//! Naming rules for the cloud objects Passport creates, shared by the controllers, the webhook
//! and `passport plan`. Pure functions: the same inputs always give the same names, so a
//! resync finds what an earlier reconcile created.

use sha2::{Digest as _, Sha256};

/// IAM role names: at most 64 characters of `[A-Za-z0-9+=,.@_-]`.
pub const AWS_ROLE_NAME_MAX: usize = 64;
/// Azure federated identity credential names: `^[a-zA-Z0-9][a-zA-Z0-9-_]{2,119}$`.
pub const AZURE_FIC_NAME_MAX: usize = 120;
/// GCP `google.subject` is limited to 127 characters.
pub const GCP_SUBJECT_MAX: usize = 127;
/// Length of the hash suffix appended when a name is shortened.
const HASH_LEN: usize = 8;

/// The first `HASH_LEN` hex digits of the SHA-256 of `input`.
fn short_hash(input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    digest
        .iter()
        .take(HASH_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Joins `parts` with `-`, replaces characters outside `allowed` with `-`, and, when the result
/// is longer than `max`, keeps a prefix and appends `-<hash of the full name>` so that distinct
/// long inputs stay distinct and the same input always gives the same name.
fn bounded_name(parts: &[&str], max: usize, allowed: impl Fn(char) -> bool) -> String {
    let full: String = parts
        .join("-")
        .chars()
        .map(|c| if allowed(c) { c } else { '-' })
        .collect();
    if full.len() <= max {
        return full;
    }
    let keep = max - HASH_LEN - 1;
    let prefix = full[..full.floor_char_boundary(keep)].trim_end_matches('-');
    format!("{prefix}-{}", short_hash(&full))
}

fn aws_role_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)
}

/// The name of the IAM role Passport creates for an AccessPolicy that does not name one:
/// `<cluster>-<namespace>-<policy>`, shortened with a stable hash suffix to 64 characters.
pub fn aws_role_name(cluster: &str, namespace: &str, policy: &str) -> String {
    bounded_name(
        &[cluster, namespace, policy],
        AWS_ROLE_NAME_MAX,
        aws_role_char,
    )
}

/// Whether `name` is a valid IAM role name.
pub fn is_valid_aws_role_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= AWS_ROLE_NAME_MAX && name.chars().all(aws_role_char)
}

/// The ARN of the role `role_name` under `role_path` (which starts and ends with `/`).
pub fn aws_role_arn(partition: &str, account_id: &str, role_path: &str, role_name: &str) -> String {
    // Plain concatenation: the webhook builds one per AWS grant, on the request path.
    [
        "arn:", partition, ":iam::", account_id, ":role", role_path, role_name,
    ]
    .concat()
}

/// The full name of a workload identity pool provider:
/// `projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`.
pub fn gcp_provider_name(project_number: &str, pool_id: &str, provider_id: &str) -> String {
    format!(
        "projects/{project_number}/locations/global/workloadIdentityPools/{pool_id}/providers/{provider_id}"
    )
}

/// The Sid of Passport's statement in an adopted role's trust policy: `Passport` followed by
/// the cluster, namespace and policy with only their letters and digits, and a stable hash of
/// the three (so that `a-b/c` and `a/b-c` stay distinct). IAM Sids are alphanumeric.
pub fn aws_statement_sid(cluster: &str, namespace: &str, policy: &str) -> String {
    let readable: String = [cluster, namespace, policy]
        .concat()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(48)
        .collect();
    format!(
        "Passport{readable}{}",
        short_hash(&format!("{cluster}/{namespace}/{policy}"))
    )
}

fn azure_fic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// The name of the federated identity credential Passport creates for one service account:
/// `<cluster>-<namespace>-<serviceaccount>`, shortened with a stable hash suffix to 120
/// characters, always starting with a letter or digit (prefixed with `p` otherwise).
pub fn azure_fic_name(cluster: &str, namespace: &str, service_account: &str) -> String {
    let name = bounded_name(
        &[cluster, namespace, service_account],
        AZURE_FIC_NAME_MAX,
        azure_fic_char,
    );
    let name = if name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name
    } else {
        bounded_name(
            &["p", cluster, namespace, service_account],
            AZURE_FIC_NAME_MAX,
            azure_fic_char,
        )
    };
    if name.len() < 3 {
        format!("{name}-fic")
    } else {
        name
    }
}

/// Whether `name` matches `^[a-zA-Z0-9][a-zA-Z0-9-_]{2,119}$`.
pub fn is_valid_azure_fic_name(name: &str) -> bool {
    (3..=AZURE_FIC_NAME_MAX).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(azure_fic_char)
}

/// Why a GCP pool or provider ID is invalid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GcpIdError {
    Length(usize),
    Character(char),
    ReservedPrefix,
}

impl std::fmt::Display for GcpIdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Length(n) => write!(f, "must be 4 to 32 characters long, not {n}"),
            Self::Character(c) => write!(
                f,
                "may contain only lowercase letters, digits and hyphens, not {c:?}"
            ),
            Self::ReservedPrefix => f.write_str("must not start with the reserved prefix gcp-"),
        }
    }
}

/// Checks a workload identity pool or provider ID: 4-32 of `[a-z0-9-]`, not starting `gcp-`.
pub fn check_gcp_id(id: &str) -> Result<(), GcpIdError> {
    if !(4..=32).contains(&id.len()) {
        return Err(GcpIdError::Length(id.len()));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(GcpIdError::Character(c));
    }
    if id.starts_with("gcp-") {
        return Err(GcpIdError::ReservedPrefix);
    }
    Ok(())
}

/// A pool or provider ID derived from a cluster name: lowercased, invalid characters replaced,
/// the reserved prefix avoided, padded to 4 and shortened with a hash suffix to 32 characters.
pub fn gcp_id(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let lower = match lower.strip_prefix("gcp-") {
        Some(rest) => format!("k8s-{rest}"),
        None => lower,
    };
    let id = bounded_name(&[&lower], 32, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
    });
    if id.len() < 4 {
        format!("{id}-k8s")
    } else {
        id
    }
}

/// The subject of a Kubernetes service account token: `system:serviceaccount:<ns>:<sa>`.
pub fn service_account_subject(namespace: &str, service_account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{service_account}")
}

/// The `google.subject` for a service account under Passport's default attribute mapping
/// (`google.subject = assertion.sub`), or an error message when it exceeds GCP's 127-character
/// limit: GCP would refuse every token exchange for it.
pub fn gcp_subject(namespace: &str, service_account: &str) -> Result<String, String> {
    let subject = service_account_subject(namespace, service_account);
    if subject.len() > GCP_SUBJECT_MAX {
        Err(format!(
            "the subject {subject:?} is {} characters long; GCP limits google.subject to {GCP_SUBJECT_MAX}. \
             Use a shorter namespace or service account name, or map google.subject to the service \
             account's uid in the trust's attributeMapping",
            subject.len()
        ))
    } else {
        Ok(subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_sids_are_alphanumeric_and_distinct() {
        let a = aws_statement_sid("prod", "a-b", "c");
        let b = aws_statement_sid("prod", "a", "b-c");
        assert!(a.starts_with("Passportprodabc"));
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
        assert_eq!(a, aws_statement_sid("prod", "a-b", "c"));
    }

    #[test]
    fn short_role_names_are_kept_verbatim() {
        assert_eq!(
            aws_role_name("prod", "payments", "api"),
            "prod-payments-api"
        );
    }

    #[test]
    fn long_role_names_get_a_stable_hash_suffix() {
        let ns = "a-very-long-namespace-name-for-the-payments-team";
        let a = aws_role_name("prod-eu-west-1", ns, "reader-policy");
        let b = aws_role_name("prod-eu-west-1", ns, "writer-policy");
        assert_eq!(a.len(), AWS_ROLE_NAME_MAX);
        assert!(is_valid_aws_role_name(&a), "{a}");
        assert_ne!(a, b, "distinct inputs must stay distinct");
        assert_eq!(a, aws_role_name("prod-eu-west-1", ns, "reader-policy"));
        assert!(a.starts_with("prod-eu-west-1-a-very-long"));
    }

    #[test]
    fn role_names_replace_characters_iam_refuses() {
        let name = aws_role_name("c", "ns", "p/with spaces");
        assert_eq!(name, "c-ns-p-with-spaces");
        assert!(is_valid_aws_role_name(&name));
        assert!(!is_valid_aws_role_name("has/slash"));
        assert!(!is_valid_aws_role_name(&"x".repeat(65)));
    }

    #[test]
    fn fic_names_match_the_arm_pattern() {
        let cases = [
            ("prod", "default", "api"),
            ("_cluster", "ns", "sa"),
            ("c", "n", "s"),
            ("c", &"n".repeat(63), &"s".repeat(253)),
            ("c.with.dots", "ns", "sa.dots"),
        ];
        for (cluster, ns, sa) in cases {
            let name = azure_fic_name(cluster, ns, sa);
            assert!(
                is_valid_azure_fic_name(&name),
                "{name:?} from {cluster}/{ns}/{sa}"
            );
        }
        assert_eq!(azure_fic_name("prod", "default", "api"), "prod-default-api");
        assert!(!is_valid_azure_fic_name("ab"));
        assert!(!is_valid_azure_fic_name("-abc"));
        assert!(!is_valid_azure_fic_name("abc="));
        assert!(!is_valid_azure_fic_name(&"a".repeat(121)));
        assert!(is_valid_azure_fic_name(&"a".repeat(120)));
    }

    #[test]
    fn gcp_ids_follow_the_pool_rules() {
        assert_eq!(check_gcp_id("prod-pool"), Ok(()));
        assert_eq!(check_gcp_id("abc"), Err(GcpIdError::Length(3)));
        assert_eq!(check_gcp_id(&"a".repeat(33)), Err(GcpIdError::Length(33)));
        assert_eq!(check_gcp_id("Prod"), Err(GcpIdError::Character('P')));
        assert_eq!(check_gcp_id("gcp-pool"), Err(GcpIdError::ReservedPrefix));
        for name in ["Prod_Cluster", "gcp-prod", "ab", &"x".repeat(50)] {
            let id = gcp_id(name);
            assert_eq!(check_gcp_id(&id), Ok(()), "{id:?} from {name:?}");
        }
    }

    #[test]
    fn gcp_subjects_over_127_characters_are_refused_with_advice() {
        assert_eq!(
            gcp_subject("payments", "api"),
            Ok("system:serviceaccount:payments:api".to_owned())
        );
        // 22 characters of prefix + 1 colon leave 104 for namespace and name together.
        assert!(gcp_subject(&"n".repeat(52), &"s".repeat(52)).is_ok());
        let err = gcp_subject(&"n".repeat(52), &"s".repeat(53)).expect_err("128 characters");
        assert!(err.contains("128 characters"), "{err}");
        assert!(err.contains("uid"), "{err}");
    }
}
