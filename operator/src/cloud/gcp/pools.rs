//! Ensure and delete of a workload identity pool and its OIDC provider: create through
//! long-running operations, `undelete` for soft-deleted IDs (never a new create: Google locks
//! the ID for 30 days), `updateMask` patches of only the changed fields, zero writes when
//! everything matches, and never a write to a pool or provider Passport does not own.

use reqwest::Method;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::{
    GcpProvider,
    rest::{Request, parse},
    wire::{self, Observed, PoolBody, ProviderBody},
};
use crate::cloud::{
    Change, CloudError, Deleted, Ensured, ErrorKind, Owner, WorkloadIdentityIntent,
    WorkloadIdentityRef, WorkloadIdentityState,
};
use passport_crds::Cloud;

/// Which of the two resources a step works on: its REST path and operation names.
#[derive(Clone, Copy)]
struct Kind {
    noun: &'static str,
    get: &'static str,
    create: &'static str,
    patch: &'static str,
    undelete: &'static str,
    delete: &'static str,
    id_param: &'static str,
}

const POOL: Kind = Kind {
    noun: "workload identity pool",
    get: "GetWorkloadIdentityPool",
    create: "CreateWorkloadIdentityPool",
    patch: "PatchWorkloadIdentityPool",
    undelete: "UndeleteWorkloadIdentityPool",
    delete: "DeleteWorkloadIdentityPool",
    id_param: "workloadIdentityPoolId",
};

const PROVIDER: Kind = Kind {
    noun: "workload identity pool provider",
    get: "GetWorkloadIdentityPoolProvider",
    create: "CreateWorkloadIdentityPoolProvider",
    patch: "PatchWorkloadIdentityPoolProvider",
    undelete: "UndeleteWorkloadIdentityPoolProvider",
    delete: "DeleteWorkloadIdentityPoolProvider",
    id_param: "workloadIdentityPoolProviderId",
};

fn pools_path(project: &str) -> String {
    format!("projects/{project}/locations/global/workloadIdentityPools")
}

fn pool_path(project: &str, pool: &str) -> String {
    format!("{}/{pool}", pools_path(project))
}

fn provider_path(project: &str, pool: &str, provider: &str) -> String {
    format!("{}/providers/{provider}", pool_path(project, pool))
}

/// One resource and what Passport wants of it.
struct Target<'a, T> {
    kind: Kind,
    project: &'a str,
    /// The collection path (for create) and the ID in it.
    parent: String,
    id: &'a str,
    owner: &'a Owner,
    desired: T,
}

impl<T> Target<'_, T> {
    fn path(&self) -> String {
        format!("{}/{}", self.parent, self.id)
    }
}

/// What one ensure step did.
struct Step {
    change: Change,
    name: String,
    changes: Vec<String>,
}

/// The owner a description names, or the words for "not Passport's".
fn check_owner(
    kind: Kind,
    operation: &'static str,
    path: &str,
    description: &str,
    owner: &Owner,
) -> Result<(), CloudError> {
    match Owner::from_description(description) {
        Some(found) if &found == owner => Ok(()),
        Some(found) => Err(CloudError::not_owned(
            Cloud::Gcp,
            operation,
            &format!("{} {path}", kind.noun),
            &found.to_string(),
        )),
        None => Err(CloudError::not_owned(
            Cloud::Gcp,
            operation,
            &format!("{} {path}", kind.noun),
            "someone else (its description carries no Passport owner)",
        )),
    }
}

impl GcpProvider {
    /// GET of a pool or provider; None when Google has no such ID (not even soft-deleted).
    async fn observe<T: DeserializeOwned + Default>(
        &self,
        kind: Kind,
        path: String,
    ) -> Result<Option<Observed<T>>, CloudError> {
        match self.rest.send(&Request::get(kind.get, path)).await {
            Ok(value) => parse(kind.get, value).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A write that returns an operation, within the write limiter, awaited to the end.
    async fn write(
        &self,
        project: &str,
        request: Request<'_>,
    ) -> Result<Option<Value>, CloudError> {
        self.limiter.acquire(project, request.operation).await?;
        let answer = self.rest.send(&request).await?;
        self.rest.finish(request.operation, answer).await
    }

    async fn ensure_one<T>(
        &self,
        target: Target<'_, T>,
        description: impl Fn(&T) -> &str,
        mask: impl Fn(&T, &T) -> Vec<&'static str>,
    ) -> Result<Step, CloudError>
    where
        T: Serialize + DeserializeOwned + Default + Clone,
    {
        let kind = target.kind;
        let path = target.path();
        let observed: Option<Observed<T>> = self.observe(kind, path.clone()).await?;
        let mut step = Step {
            change: Change::Unchanged,
            name: path.clone(),
            changes: Vec::new(),
        };
        let observed = match observed {
            None => {
                let body = serde_json::to_value(&target.desired).unwrap_or(Value::Null);
                let request = Request::write(kind.create, Method::POST, target.parent.clone())
                    .query(kind.id_param, target.id)
                    .body(&body);
                let response = match self.write(target.project, request).await {
                    Ok(response) => response,
                    // A create retried after a lost answer finds its own first attempt: look
                    // again and carry on as for an existing object (the owner check decides).
                    Err(e) if e.code.as_deref() == Some("ALREADY_EXISTS") => {
                        match self.observe::<T>(kind, path.clone()).await? {
                            Some(found) => {
                                return self.converge(target, found, step, description, mask).await;
                            }
                            None => return Err(e),
                        }
                    }
                    Err(e) => return Err(e),
                };
                let created: Observed<T> = match response {
                    Some(value) => parse(kind.create, value)?,
                    None => Observed::default(),
                };
                tracing::info!(kind = kind.noun, path = %path, "created");
                step.change = Change::Created;
                step.changes
                    .push(format!("created {} {}", kind.noun, target.id));
                if !created.name.is_empty() {
                    step.name = created.name;
                }
                return Ok(step);
            }
            Some(observed) => observed,
        };
        self.converge(target, observed, step, description, mask)
            .await
    }

    /// Brings an existing pool or provider to `target`: owner check, undelete, patch.
    async fn converge<T>(
        &self,
        target: Target<'_, T>,
        mut current: Observed<T>,
        mut step: Step,
        description: impl Fn(&T) -> &str,
        mask: impl Fn(&T, &T) -> Vec<&'static str>,
    ) -> Result<Step, CloudError>
    where
        T: Serialize + DeserializeOwned + Default + Clone,
    {
        let kind = target.kind;
        let path = target.path();
        check_owner(
            kind,
            kind.get,
            &path,
            description(&current.body),
            target.owner,
        )?;
        if current.is_deleted() {
            let empty = Value::Object(serde_json::Map::new());
            let request = Request::write(kind.undelete, Method::POST, format!("{path}:undelete"))
                .body(&empty);
            if let Some(value) = self.write(target.project, request).await? {
                current = parse(kind.undelete, value)?;
            }
            tracing::info!(kind = kind.noun, path = %path, "undeleted");
            step.change = Change::Created;
            step.changes
                .push(format!("undeleted {} {}", kind.noun, target.id));
        }
        if !current.name.is_empty() {
            step.name = current.name.clone();
        }
        let fields = mask(&current.body, &target.desired);
        if fields.is_empty() {
            return Ok(step);
        }
        let body = wire::masked(&target.desired, &fields);
        let request = Request::write(kind.patch, Method::PATCH, path.clone())
            .query("updateMask", fields.join(","))
            .body(&body);
        self.write(target.project, request).await?;
        tracing::info!(kind = kind.noun, path = %path, fields = %fields.join(","), "updated");
        if step.change == Change::Unchanged {
            step.change = Change::Updated;
        }
        step.changes.push(format!(
            "updated {} {}: {}",
            kind.noun,
            target.id,
            fields.join(", ")
        ));
        Ok(step)
    }

    pub(super) async fn ensure_pool_and_provider(
        &self,
        intent: &WorkloadIdentityIntent,
    ) -> Result<Ensured<WorkloadIdentityState>, CloudError> {
        validate(intent)?;
        let project = intent.project_number.as_str();
        let pool = self
            .ensure_one(
                Target {
                    kind: POOL,
                    project,
                    parent: pools_path(project),
                    id: &intent.pool_id,
                    owner: &intent.owner,
                    desired: wire::desired_pool(intent),
                },
                |p: &PoolBody| p.description.as_str(),
                wire::pool_mask,
            )
            .await?;
        let provider = self
            .ensure_one(
                Target {
                    kind: PROVIDER,
                    project,
                    parent: format!("{}/providers", pool_path(project, &intent.pool_id)),
                    id: &intent.provider_id,
                    owner: &intent.owner,
                    desired: wire::desired_provider(intent),
                },
                |p: &ProviderBody| p.description.as_str(),
                wire::provider_mask,
            )
            .await?;
        let change = match (pool.change, provider.change) {
            (Change::Created, _) | (_, Change::Created) => Change::Created,
            (Change::Unchanged, Change::Unchanged) => Change::Unchanged,
            _ => Change::Updated,
        };
        let provider_name = provider.name;
        Ok(Ensured {
            state: WorkloadIdentityState {
                audience: format!("//iam.googleapis.com/{provider_name}"),
                provider_name,
            },
            change,
            changes: pool.changes.into_iter().chain(provider.changes).collect(),
        })
    }

    /// Deletes one pool or provider when it is live and `owner`'s.
    async fn delete_one<T: DeserializeOwned + Default>(
        &self,
        kind: Kind,
        project: &str,
        path: String,
        owner: &Owner,
        description: impl Fn(&T) -> &str,
    ) -> Result<Deleted, CloudError> {
        let Some(observed) = self.observe::<T>(kind, path.clone()).await? else {
            return Ok(Deleted::Absent);
        };
        if observed.is_deleted() {
            return Ok(Deleted::Absent);
        }
        if let Err(error) =
            check_owner(kind, kind.delete, &path, description(&observed.body), owner)
        {
            return Ok(Deleted::Kept { why: error.message });
        }
        self.write(
            project,
            Request::write(kind.delete, Method::DELETE, path.clone()),
        )
        .await?;
        tracing::info!(kind = kind.noun, path = %path, "deleted");
        Ok(Deleted::Deleted)
    }

    pub(super) async fn delete_pool_and_provider(
        &self,
        target: &WorkloadIdentityRef,
    ) -> Result<Deleted, CloudError> {
        let project = target.project_number.as_str();
        let provider = self
            .delete_one(
                PROVIDER,
                project,
                provider_path(project, &target.pool_id, &target.provider_id),
                &target.owner,
                |p: &ProviderBody| p.description.as_str(),
            )
            .await?;
        if let Deleted::Kept { .. } = provider {
            return Ok(provider);
        }
        let pool_path = pool_path(project, &target.pool_id);
        let others = self.live_providers(&pool_path).await?;
        if !others.is_empty() {
            return Ok(match provider {
                Deleted::Absent => Deleted::Kept {
                    why: format!(
                        "workload identity pool {pool_path} still holds providers {}",
                        others.join(", ")
                    ),
                },
                done => done,
            });
        }
        let pool = self
            .delete_one(POOL, project, pool_path, &target.owner, |p: &PoolBody| {
                p.description.as_str()
            })
            .await?;
        Ok(match (provider, pool) {
            (Deleted::Deleted, _) | (_, Deleted::Deleted) => Deleted::Deleted,
            (_, kept @ Deleted::Kept { .. }) => kept,
            _ => Deleted::Absent,
        })
    }

    /// The IDs of the pool's providers that are not soft-deleted (none when the pool is gone).
    async fn live_providers(&self, pool_path: &str) -> Result<Vec<String>, CloudError> {
        let mut ids = Vec::new();
        let mut page_token = String::new();
        loop {
            let mut request = Request::get(
                "ListWorkloadIdentityPoolProviders",
                format!("{pool_path}/providers"),
            );
            if !page_token.is_empty() {
                request = request.query("pageToken", page_token.clone());
            }
            let page = match self.rest.send(&request).await {
                Ok(page) => page,
                Err(e) if e.is_not_found() => return Ok(ids),
                Err(e) => return Err(e),
            };
            let providers = page
                .get("workloadIdentityPoolProviders")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for provider in providers {
                let observed: Observed<ProviderBody> =
                    parse("ListWorkloadIdentityPoolProviders", provider)?;
                if !observed.is_deleted() {
                    let id = observed.name.rsplit('/').next().unwrap_or_default();
                    ids.push(id.to_owned());
                }
            }
            match page.get("nextPageToken").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => page_token = next.to_owned(),
                _ => return Ok(ids),
            }
        }
    }
}

/// Refuses, before any call, what Google would refuse: IDs and the description's length.
fn validate(intent: &WorkloadIdentityIntent) -> Result<(), CloudError> {
    let invalid = |message: String| {
        CloudError::new(
            ErrorKind::Invalid,
            Cloud::Gcp,
            "EnsureWorkloadIdentityProvider",
            message,
        )
    };
    for (what, id) in [("pool", &intent.pool_id), ("provider", &intent.provider_id)] {
        let charset = id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !(4..=32).contains(&id.len()) || !charset || id.starts_with("gcp-") {
            return Err(invalid(format!(
                "the {what} ID {id:?} must be 4-32 characters of [a-z0-9-] and must not start \
                 with gcp-"
            )));
        }
    }
    let description = intent.owner.description();
    if description.chars().count() > wire::DESCRIPTION_MAX {
        return Err(invalid(format!(
            "the owner description {description:?} is longer than Google's {} characters; \
             use a shorter cluster or trust name",
            wire::DESCRIPTION_MAX
        )));
    }
    if intent.project_number.is_empty()
        || !intent.project_number.chars().all(|c| c.is_ascii_digit())
    {
        return Err(invalid(format!(
            "the project number {:?} must be digits",
            intent.project_number
        )));
    }
    Ok(())
}
