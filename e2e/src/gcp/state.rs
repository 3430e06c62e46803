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
    model::{Policy, Pool, Provider},
};

/// Tunables of the fake, from [`super::GcpOptions`].
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub writes_per_minute: usize,
    pub operation_polls: u32,
    pub soft_delete_retention: Duration,
    pub access_token_lifetime: Duration,
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

/// A protobuf `Timestamp` in JSON: RFC 3339, UTC, microsecond precision like Google's.
pub(crate) fn rfc3339(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
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
    fn timestamps_have_microsecond_precision() -> anyhow::Result<()> {
        let at: Timestamp = "2026-01-02T03:04:05.123456789Z".parse()?;
        assert_eq!(rfc3339(at), "2026-01-02T03:04:05.123456Z");
        let whole: Timestamp = "2026-01-02T03:04:05Z".parse()?;
        assert_eq!(rfc3339(whole), "2026-01-02T03:04:05.000000Z");
        Ok(())
    }
}
