//! Call accounting: every provider counts its cloud calls by cloud, operation, read/write and
//! outcome. The controllers export the counts as a Prometheus counter; tests and benchmarks read
//! them to prove that a steady state makes no write.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use passport_crds::Cloud;

use super::error::ErrorKind;

/// Whether a call reads or changes cloud state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

/// How one call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Ok,
    NotFound,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotFound => "not_found",
            Self::Error => "error",
        }
    }

    pub fn of<T>(result: &Result<T, super::CloudError>) -> Self {
        match result {
            Ok(_) => Self::Ok,
            Err(e) if e.kind == ErrorKind::NotFound => Self::NotFound,
            Err(_) => Self::Error,
        }
    }
}

/// The labels of one counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallKey {
    pub cloud: &'static str,
    pub operation: &'static str,
    pub access: Access,
    pub outcome: Outcome,
}

/// Shared call counters. Cheap to clone; clones count into the same map.
#[derive(Clone, Debug, Default)]
pub struct Calls {
    counts: Arc<Mutex<BTreeMap<CallKey, u64>>>,
}

impl Calls {
    pub fn record(&self, cloud: Cloud, operation: &'static str, access: Access, outcome: Outcome) {
        let key = CallKey {
            cloud: cloud.as_str(),
            operation,
            access,
            outcome,
        };
        *self.lock().entry(key).or_default() += 1;
    }

    /// Every counter, in a stable order.
    pub fn snapshot(&self) -> Vec<(CallKey, u64)> {
        self.lock().iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Calls of one cloud with this access, whatever their outcome.
    pub fn count(&self, cloud: Cloud, access: Access) -> u64 {
        self.sum(|k| k.cloud == cloud.as_str() && k.access == access)
    }

    /// Write calls of one cloud: what "no write at steady state" is measured by.
    pub fn writes(&self, cloud: Cloud) -> u64 {
        self.count(cloud, Access::Write)
    }

    /// Calls of one operation, whatever their outcome.
    pub fn operation(&self, cloud: Cloud, operation: &str) -> u64 {
        self.sum(|k| k.cloud == cloud.as_str() && k.operation == operation)
    }

    /// All calls of one cloud.
    pub fn total(&self, cloud: Cloud) -> u64 {
        self.sum(|k| k.cloud == cloud.as_str())
    }

    fn sum(&self, keep: impl Fn(&CallKey) -> bool) -> u64 {
        self.lock()
            .iter()
            .filter(|(k, _)| keep(k))
            .map(|(_, v)| v)
            .sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<CallKey, u64>> {
        // Counters stay meaningful even if a thread panicked while holding the lock.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_by_cloud_access_and_operation() {
        let calls = Calls::default();
        let clone = calls.clone();
        calls.record(Cloud::Aws, "GetRole", Access::Read, Outcome::Ok);
        clone.record(Cloud::Aws, "GetRole", Access::Read, Outcome::NotFound);
        calls.record(Cloud::Aws, "CreateRole", Access::Write, Outcome::Ok);
        calls.record(Cloud::Gcp, "SetIamPolicy", Access::Write, Outcome::Error);
        assert_eq!(calls.writes(Cloud::Aws), 1);
        assert_eq!(calls.count(Cloud::Aws, Access::Read), 2);
        assert_eq!(calls.operation(Cloud::Aws, "GetRole"), 2);
        assert_eq!(calls.total(Cloud::Gcp), 1);
        assert_eq!(calls.writes(Cloud::Azure), 0);
        assert_eq!(calls.snapshot().len(), 4);
    }
}
