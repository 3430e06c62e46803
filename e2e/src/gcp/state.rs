//! The fake's in-memory state: projects, pools, providers, long-running operations, service
//! accounts with their IAM policies, issued access tokens, and the write-rate window.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    hash::{BuildHasher as _, RandomState},
    time::{Duration, Instant},
};

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{
    error::ApiError,
    keys::KeyRecord,
    model::{Policy, Pool, Provider},
};

/// Tunables of the fake, from [`super::GcpOptions`].
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub writes_per_minute: usize,
    pub operation_polls: u32,
    pub soft_delete_retention: Duration,
    pub access_token_lifetime: Duration,
    /// Refuse IAM calls without a Bearer token (tokens present are always verified).
    pub require_authentication: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Project {
    pub id: String,
    pub number: String,
}

/// A pool or provider with the instant after which a soft-deleted one is purged.
#[derive(Debug, Clone)]
pub(crate) struct Entry<T> {
    pub resource: T,
    pub purge_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub(crate) struct ServiceAccountRecord {
    pub email: String,
    pub project_id: String,
    pub unique_id: String,
    pub display_name: Option<String>,
    pub policy: Policy,
    /// Number of policy writes so far; the etag is derived from it.
    pub policy_writes: u64,
}

/// Who an access token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    /// A federated identity from a workload identity pool (the STS exchange).
    Federated {
        project_number: String,
        pool: String,
        subject: String,
        groups: Vec<String>,
        /// Custom attributes by name, without the `attribute.` prefix.
        attributes: BTreeMap<String, String>,
    },
    /// A Google service account (impersonation).
    ServiceAccount { email: String },
}

impl Principal {
    /// The IAM member identifier: `principal://...` or `serviceAccount:<email>`.
    pub fn member(&self) -> String {
        match self {
            Self::Federated {
                project_number,
                pool,
                subject,
                ..
            } => format!(
                "principal://{}/subject/{subject}",
                pool_path(project_number, pool)
            ),
            Self::ServiceAccount { email } => format!("serviceAccount:{email}"),
        }
    }
}

/// `iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P`: the stem shared
/// by principal identifiers and the STS audience.
pub(crate) fn pool_path(project_number: &str, pool: &str) -> String {
    format!(
        "iam.googleapis.com/projects/{project_number}/locations/global/workloadIdentityPools/{pool}"
    )
}

#[derive(Debug, Clone)]
pub(crate) struct TokenRecord {
    pub principal: Principal,
    pub expires_at: Timestamp,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
struct OperationRecord {
    polls: u32,
    metadata_type: &'static str,
    response: Value,
}

pub(crate) struct Store {
    pub config: Config,
    projects: Vec<Project>,
    pub pools: BTreeMap<(String, String), Entry<Pool>>,
    pub providers: BTreeMap<(String, String, String), Entry<Provider>>,
    operations: HashMap<String, OperationRecord>,
    pub service_accounts: BTreeMap<String, ServiceAccountRecord>,
    pub tokens: HashMap<String, TokenRecord>,
    /// Service-account keys by key id.
    pub keys: HashMap<String, KeyRecord>,
    writes: HashMap<String, VecDeque<Instant>>,
    counter: u64,
    hasher: RandomState,
}

impl Store {
    pub fn new(config: Config, projects: Vec<Project>) -> Self {
        Self {
            config,
            projects,
            pools: BTreeMap::new(),
            providers: BTreeMap::new(),
            operations: HashMap::new(),
            service_accounts: BTreeMap::new(),
            tokens: HashMap::new(),
            keys: HashMap::new(),
            writes: HashMap::new(),
            counter: 0,
            hasher: RandomState::new(),
        }
    }

    /// Resolves a project given by ID or number. Google answers 403 for projects the caller
    /// cannot see, which includes ones that do not exist.
    pub fn project(&self, id_or_number: &str, permission: &str) -> Result<Project, ApiError> {
        self.projects
            .iter()
            .find(|p| p.id == id_or_number || p.number == id_or_number)
            .cloned()
            .ok_or_else(|| {
                ApiError::iam_permission_denied(permission, &format!("projects/{id_or_number}"))
            })
    }

    pub fn project_by_id(&self, id: &str) -> Option<Project> {
        self.projects.iter().find(|p| p.id == id).cloned()
    }

    /// Counts one write to the workload identity configuration of `project`, refusing it when
    /// the project has used its per-minute quota.
    pub fn record_write(&mut self, project: &Project) -> Result<(), ApiError> {
        let now = Instant::now();
        let window = self.writes.entry(project.number.clone()).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            window.pop_front();
        }
        if window.len() >= self.config.writes_per_minute {
            return Err(ApiError::resource_exhausted(
                format!(
                    "Quota exceeded for quota metric 'Workload Identity Pool write requests' and limit \
                     'Workload Identity Pool write requests per minute per project' of service \
                     'iam.googleapis.com' for consumer 'project_number:{}'.",
                    project.number
                ),
                &format!("projects/{}", project.number),
            ));
        }
        window.push_back(now);
        Ok(())
    }

    /// Records a long-running operation under `resource_name` whose result is `response`, and
    /// returns it as first answered: not yet done, so clients have to poll.
    pub fn start_operation(
        &mut self,
        resource_name: &str,
        metadata_type: &'static str,
        response: Value,
    ) -> Value {
        let name = format!("{resource_name}/operations/{}", self.random_hex());
        let record = OperationRecord {
            polls: 0,
            metadata_type,
            response,
        };
        let body = operation_json(&name, &record, false);
        self.operations.insert(name, record);
        body
    }

    /// `operations.get`: done after the configured number of polls.
    pub fn poll_operation(&mut self, name: &str) -> Result<Value, ApiError> {
        let polls_needed = self.config.operation_polls;
        let record = self
            .operations
            .get_mut(name)
            .ok_or_else(|| ApiError::not_found(format!("Operation {name} not found.")))?;
        record.polls = record.polls.saturating_add(1);
        let done = record.polls >= polls_needed;
        Ok(operation_json(name, record, done))
    }

    /// Forgets soft-deleted pools and providers whose retention has passed.
    pub fn purge_expired(&mut self) {
        let now = Timestamp::now();
        let expired = |purge_at: &Option<Timestamp>| purge_at.is_some_and(|t| t <= now);
        self.pools.retain(|_, e| !expired(&e.purge_at));
        let pools = &self.pools;
        self.providers.retain(|(number, pool, _), e| {
            !expired(&e.purge_at) && pools.contains_key(&(number.clone(), pool.clone()))
        });
    }

    /// When a soft delete made now expires.
    pub fn purge_deadline(&self) -> Timestamp {
        let retention = jiff::SignedDuration::try_from(self.config.soft_delete_retention)
            .unwrap_or(jiff::SignedDuration::from_hours(24 * 30));
        Timestamp::now()
            .checked_add(retention)
            .unwrap_or(Timestamp::MAX)
    }

    /// Stores an opaque access token for `record`, dropping expired ones first.
    pub fn issue_token(&mut self, kind: &str, record: TokenRecord) -> String {
        let now = Timestamp::now();
        self.tokens.retain(|_, r| r.expires_at > now);
        let token = format!("gcpfake.{kind}.{}{}", self.random_hex(), self.random_hex());
        self.tokens.insert(token.clone(), record);
        token
    }

    /// 128 bits of process-local randomness as hex, for operation names and tokens.
    pub fn random_hex(&mut self) -> String {
        self.counter = self.counter.wrapping_add(1);
        let nanos = Timestamp::now().as_nanosecond();
        let a = self.hasher.hash_one((self.counter, nanos, 0u8));
        let b = RandomState::new().hash_one((nanos, self.counter, 1u8));
        format!("{a:016x}{b:016x}")
    }
}

/// A protobuf `Timestamp` in JSON as proto3 prints it: RFC 3339 in UTC (`Z`) with 0, 3, 6 or
/// 9 fractional digits, as few as the value needs.
pub(crate) fn rfc3339(at: Timestamp) -> String {
    let nanos = at.subsec_nanosecond();
    let seconds = at.strftime("%Y-%m-%dT%H:%M:%S");
    if nanos == 0 {
        format!("{seconds}Z")
    } else if nanos % 1_000_000 == 0 {
        format!("{seconds}.{:03}Z", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!("{seconds}.{:06}Z", nanos / 1_000)
    } else {
        format!("{seconds}.{nanos:09}Z")
    }
}

/// `at` without its fraction of a second: Google issues access tokens expiring on whole
/// seconds (`"expireTime": "2014-10-02T15:01:23Z"` in the IAM Credentials reference), and
/// google-auth for Python parses `expireTime` with a format that has no fraction.
pub(crate) fn whole_seconds(at: Timestamp) -> Timestamp {
    Timestamp::from_second(at.as_second()).unwrap_or(at)
}

fn operation_json(name: &str, record: &OperationRecord, done: bool) -> Value {
    let mut op = json!({
        "name": name,
        "metadata": { "@type": record.metadata_type },
    });
    // proto3 JSON leaves `done: false` out, as Google does.
    if done {
        op["done"] = Value::Bool(true);
        op["response"] = record.response.clone();
    }
    op
}

/// Serializes a resource with its `@type`, as an operation `response` carries it.
pub(crate) fn typed(type_url: &str, resource: &impl serde::Serialize) -> Value {
    let mut value = serde_json::to_value(resource).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.insert("@type".into(), Value::String(type_url.into()));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_proto3_does() -> anyhow::Result<()> {
        let at: Timestamp = "2026-01-02T03:04:05.123456789Z".parse()?;
        assert_eq!(rfc3339(at), "2026-01-02T03:04:05.123456789Z");
        let micros: Timestamp = "2026-01-02T03:04:05.123456Z".parse()?;
        assert_eq!(rfc3339(micros), "2026-01-02T03:04:05.123456Z");
        let millis: Timestamp = "2026-01-02T03:04:05.120Z".parse()?;
        assert_eq!(rfc3339(millis), "2026-01-02T03:04:05.120Z");
        let whole: Timestamp = "2026-01-02T03:04:05Z".parse()?;
        assert_eq!(rfc3339(whole), "2026-01-02T03:04:05Z");
        assert_eq!(rfc3339(whole_seconds(at)), "2026-01-02T03:04:05Z");
        Ok(())
    }
}
