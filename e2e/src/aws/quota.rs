//! IAM's role trust-policy size quota (`ACLSizePerRole`, Service Quotas `L-C07B4B0D`): the
//! policy's length in characters, whitespace not counted. Pure, no IO.

/// IAM's default quota; accounts can raise it to 8192.
pub const DEFAULT_TRUST_POLICY_QUOTA: usize = 2048;

/// The size IAM charges against the quota: characters, whitespace excluded.
pub fn trust_policy_size(document: &str) -> usize {
    document.chars().filter(|c| !c.is_whitespace()).count()
}

/// The policy is larger than the quota allows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Cannot exceed quota for ACLSizePerRole: {quota}")]
pub struct QuotaExceeded {
    pub quota: usize,
    pub size: usize,
}

/// Refuses `document` when it is larger than `quota`, with IAM's `LimitExceeded` message.
pub fn check_quota(document: &str, quota: usize) -> Result<(), QuotaExceeded> {
    let size = trust_policy_size(document);
    if size > quota {
        Err(QuotaExceeded { quota, size })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_not_counted() {
        assert_eq!(trust_policy_size("{ \"a\" :\n\t\"b c\" }"), 10);
        assert_eq!(trust_policy_size(""), 0);
        // Characters, not bytes.
        assert_eq!(trust_policy_size("é"), 1);
    }

    #[test]
    fn the_quota_is_inclusive() {
        let at = "x".repeat(2048);
        assert_eq!(check_quota(&at, DEFAULT_TRUST_POLICY_QUOTA), Ok(()));
        let padded = format!("{at}\n   \n");
        assert_eq!(check_quota(&padded, DEFAULT_TRUST_POLICY_QUOTA), Ok(()));
        let over = format!("{at}y");
        let err = check_quota(&over, DEFAULT_TRUST_POLICY_QUOTA).err();
        assert_eq!(
            err.as_ref().map(ToString::to_string).as_deref(),
            Some("Cannot exceed quota for ACLSizePerRole: 2048")
        );
        assert_eq!(err.map(|e| e.size), Some(2049));
    }
}
