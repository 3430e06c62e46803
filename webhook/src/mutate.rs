//! `mutate`: pod + bindings -> the mutated pod and its decision trace, or a denial. Pure,
//! synchronous and idempotent (`mutate(mutate(p)) == mutate(p)`); the only inputs are its
//! arguments. Model: the EKS webhook's handler, with patch building apart from HTTP.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt as _;
use passport_crds::access_policy::Enforcement;
use passport_crds::keys;
use passport_crds::{AccessPolicy, Cloud, FederatedTrust};
use serde::Serialize;

use crate::bindings::{Bindings, PolicyBinding};
use crate::compat;
use crate::conditions;
use crate::grants::{self, AwsGrant, Grant, OidcToken};
use crate::inject;
use crate::patch;
use crate::trace::{Outcome, StepKind, Trace};

/// An admitted pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Mutation {
    /// The pod with Passport's injection (equal to the input when nothing applies). Only its
    /// annotations, volumes, and its containers' and init containers' env and volume mounts
    /// (appended to, never edited) differ from the input: the patch is built from those alone.
    pub pod: Pod,
    /// `namespace/name` of the policies whose credentials the pod got.
    pub applied: Vec<String>,
    /// Policies whose conditions failed under `enforcement: Skip` (each a Warning event).
    pub skipped: Vec<SkippedPolicy>,
    /// The compatibility modes that gave the pod credentials (`eks`, `azure`): the annotations
    /// of the EKS or Azure webhooks, for clouds no AccessPolicy covers.
    pub compat: Vec<String>,
    pub trace: Trace,
    /// What the patch needs of the pod as it was (None when nothing was injected): what
    /// [`Mutation::patch_json`] compares with, so the patch never needs a copy of the whole pod.
    pub before: Option<patch::Snapshot>,
}

impl Mutation {
    /// The JSON patch from the input pod to `pod`, as an AdmissionResponse carries it (None
    /// when it is empty): exactly `json_patch::diff` of the two pods serialised.
    pub fn patch_json(&self) -> Result<Option<Vec<u8>>, serde_json::Error> {
        match &self.before {
            Some(before) => before.patch_json(&self.pod),
            None => Ok(None),
        }
    }
}

/// A policy left out because its conditions failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkippedPolicy {
    pub policy: String,
    pub reason: String,
}

/// A refused pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Denial {
    /// Shown to whoever created the pod: names each policy and the condition that failed.
    pub message: String,
    /// `namespace/name` of the policies that refused the pod (empty when the refusal comes
    /// from elsewhere, such as a malformed migration annotation).
    pub policies: Vec<String>,
    pub trace: Trace,
}

/// The pod's service account; an empty name means `default`, as for the API server.
pub fn service_account(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| {
            s.service_account_name
                .as_deref()
                .or(s.service_account.as_deref())
        })
        .filter(|name| !name.is_empty())
        .unwrap_or("default")
}

/// A stored policy's name (`name_any` without its copy).
fn policy_name(policy: &AccessPolicy) -> &str {
    policy
        .metadata
        .name
        .as_deref()
        .or(policy.metadata.generate_name.as_deref())
        .unwrap_or_default()
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// A policy that passed every check, with its trust.
struct Admitted<'a> {
    key: String,
    policy: &'a AccessPolicy,
    trust: &'a FederatedTrust,
}

/// Decides what `pod` gets from `bindings` and returns the mutated pod (a copy: see
/// [`mutate_owned`]).
pub fn mutate(pod: &Pod, bindings: &Bindings) -> Result<Mutation, Denial> {
    mutate_owned(pod.clone(), bindings)
}

/// [`mutate`] of a pod the caller owns (the review's, just parsed), changed in place.
pub fn mutate_owned(mut pod: Pod, bindings: &Bindings) -> Result<Mutation, Denial> {
    // A pod with one policy takes about eight steps: one allocation for most.
    let mut trace = Trace {
        steps: Vec::with_capacity(8),
    };
    let decided = decide(&pod, bindings, &mut trace)?;
    // A pod that opts out has its one step already ("...; nothing injected").
    let opted_out = decided.is_none();
    let (applied, skipped, compat, grants) = decided.unwrap_or_default();
    if grants.is_empty() {
        if !opted_out {
            trace.push(StepKind::Decision, None, Outcome::Info, "nothing injected");
        }
        return Ok(Mutation {
            pod,
            applied,
            skipped,
            compat,
            trace,
            before: None,
        });
    }
    let before = patch::Snapshot::of(&pod, grants.iter().map(|g| g.volume.name.as_str()));
    let skip = compat::split_list(annotation(&pod, keys::SKIP_CONTAINERS), ',');
    if !skip.is_empty() {
        let names: Vec<&str> = skip.iter().map(String::as_str).collect();
        trace.push(
            StepKind::Pod,
            None,
            Outcome::Info,
            format!("{} names {}", keys::SKIP_CONTAINERS, names.join(", ")),
        );
    }
    let mut injected = String::from("injected ");
    for (i, g) in grants.iter().enumerate() {
        if i > 0 {
            injected.push_str(", ");
        }
        injected.push_str(g.cloud.as_str());
        injected.push_str(" (");
        injected.push_str(&g.source);
        injected.push(')');
    }
    inject::apply(&mut pod, grants, &skip, &bindings.env_sources, &mut trace);
    if !applied.is_empty() {
        pod.annotations_mut()
            .insert(keys::INJECTED.to_owned(), applied.join(","));
    }
    trace.push(StepKind::Decision, None, Outcome::Pass, injected);
    Ok(Mutation {
        pod,
        applied,
        skipped,
        compat,
        trace,
        before: Some(before),
    })
}

/// What `decide` settled: the policies applied and skipped, the compatibility modes, and the
/// grants to inject.
type Decided = (Vec<String>, Vec<SkippedPolicy>, Vec<String>, Vec<Grant>);

/// Every check of `mutate`, on the untouched pod: None when the pod opts out.
fn decide(pod: &Pod, bindings: &Bindings, trace: &mut Trace) -> Result<Option<Decided>, Denial> {
    let ns = bindings.namespace.as_str();
    let sa = service_account(pod);

    if annotation(pod, keys::INJECT) == Some("false") {
        trace.push(
            StepKind::Pod,
            None,
            Outcome::Info,
            format!(
                "the pod opts out with {}: \"false\"; nothing injected",
                keys::INJECT
            ),
        );
        return Ok(None);
    }

    let mut named: Vec<&PolicyBinding> = bindings
        .policies
        .iter()
        .filter(|b| b.policy.spec.service_accounts.iter().any(|s| s == sa))
        .collect();
    named.sort_by(|a, b| a.policy.metadata.name.cmp(&b.policy.metadata.name));
    if named.is_empty() {
        trace.push(
            StepKind::Policy,
            None,
            Outcome::Info,
            format!("no AccessPolicy in namespace {ns} names service account {sa}"),
        );
    }

    let mut admitted = Vec::new();
    let mut skipped = Vec::new();
    let mut rejections = Vec::new();
    let mut rejecting = Vec::new();
    for binding in named {
        // Plain concatenation on the request path: `format!` costs several times as much.
        let key = [ns, "/", policy_name(&binding.policy)].concat();
        let p = Some(key.as_str());
        trace.push(
            StepKind::Policy,
            p,
            Outcome::Pass,
            ["names service account ", sa].concat(),
        );
        let trust_name = &binding.policy.spec.trust_ref.name;
        let Some(trust) = &binding.trust else {
            trace.push(
                StepKind::Trust,
                p,
                Outcome::Fail,
                format!("FederatedTrust {trust_name} does not exist: not injected"),
            );
            continue;
        };
        let (policy_cloud, trust_cloud) = (binding.policy.spec.cloud(), trust.spec.cloud());
        if policy_cloud.is_none() || policy_cloud != trust_cloud {
            let show = |c: Option<Cloud>| c.map_or("no single cloud".to_owned(), |c| c.to_string());
            trace.push(
                StepKind::Trust,
                p,
                Outcome::Fail,
                format!(
                    "the policy is for {} but FederatedTrust {trust_name} is for {}: not injected",
                    show(policy_cloud),
                    show(trust_cloud)
                ),
            );
            continue;
        }
        if !binding.trust_admits_namespace {
            trace.push(StepKind::Trust, p, Outcome::Fail, format!(
                "FederatedTrust {trust_name}'s namespaceSelector does not select namespace {ns}: not injected"));
            continue;
        }
        // The controllers refuse such a policy before any cloud call; injecting its identity
        // anyway would hand the pod env that names a role, service account, identity or
        // audience the cluster admin did not allow.
        if let Some(message) =
            passport_crds::matching::identity_refusal(&binding.policy.spec, trust_name, &trust.spec)
        {
            trace.push(
                StepKind::Trust,
                p,
                Outcome::Fail,
                format!("{message}: not injected"),
            );
            continue;
        }
        trace.push(
            StepKind::Trust,
            p,
            Outcome::Pass,
            [
                "FederatedTrust ",
                trust_name,
                " admits namespace ",
                ns,
                " and allows the identity",
            ]
            .concat(),
        );

        let results = binding
            .policy
            .spec
            .conditions
            .as_ref()
            .map(|c| conditions::check(c, pod, bindings.now))
            .unwrap_or_default();
        if results.is_empty() {
            trace.push(
                StepKind::Condition,
                p,
                Outcome::Info,
                "no admission conditions",
            );
        }
        let mut failed = Vec::new();
        for result in results {
            let outcome = if result.passed {
                Outcome::Pass
            } else {
                Outcome::Fail
            };
            trace.push(
                StepKind::Condition,
                p,
                outcome,
                [result.kind.as_str(), ": ", &result.message].concat(),
            );
            if !result.passed {
                failed.push(format!(
                    "condition {} failed: {}",
                    result.kind.as_str(),
                    result.message
                ));
            }
        }
        if failed.is_empty() {
            admitted.push(Admitted {
                key,
                policy: &binding.policy,
                trust,
            });
            continue;
        }
        match binding.policy.spec.enforcement {
            Enforcement::Skip => {
                trace.push(StepKind::Decision, p, Outcome::Fail, "not injected (enforcement: Skip): the pod is admitted without this policy's credentials");
                skipped.push(SkippedPolicy {
                    policy: key,
                    reason: failed.join("; "),
                });
            }
            Enforcement::Reject => {
                trace.push(
                    StepKind::Decision,
                    p,
                    Outcome::Fail,
                    "the pod is refused (enforcement: Reject)",
                );
                rejections.push(format!("AccessPolicy {key}: {}", failed.join("; ")));
                rejecting.push(key);
            }
        }
    }
    if !rejections.is_empty() {
        return Err(Denial {
            message: format!("Passport refused the pod: {}", rejections.join("; ")),
            policies: rejecting,
            trace: std::mem::take(trace),
        });
    }
    let (grants, applied, compat) = build_grants(pod, &admitted, bindings, trace)?;
    Ok(Some((applied, skipped, compat, grants)))
}

/// The grants, the policies applied and the compatibility modes that granted.
type Built = (Vec<Grant>, Vec<String>, Vec<String>);

/// One grant per cloud (the first policy by name wins; an SDK reads one identity per cloud
/// from env), all OIDC policies together, then the compatibility annotations for clouds no
/// policy covers.
fn build_grants(
    pod: &Pod,
    admitted: &[Admitted<'_>],
    bindings: &Bindings,
    trace: &mut Trace,
) -> Result<Built, Denial> {
    let config = &bindings.config;
    let ns = bindings.namespace.as_str();
    let mut grants: Vec<Grant> = Vec::new();
    let mut applied = Vec::new();
    let mut taken: Vec<(Cloud, String)> = Vec::new();
    let mut oidc = Vec::new();
    let mut oidc_sources = Vec::new();
    for a in admitted {
        let p = Some(a.key.as_str());
        let spec = &a.policy.spec;
        let expiration = spec.token.expiration_seconds;
        let audience = spec.token.audience.as_deref();
        let source = ["policy ", &a.key].concat();
        let grant = match (&spec.aws, &spec.gcp, &spec.azure, &spec.oidc, &a.trust.spec) {
            (_, _, _, Some(access), _) => {
                oidc.push(OidcToken {
                    policy: policy_name(a.policy).to_owned(),
                    audience: audience.unwrap_or(&access.audience).to_owned(),
                    expiration,
                });
                oidc_sources.push(a.key.clone());
                applied.push(a.key.clone());
                trace.push(StepKind::Decision, p, Outcome::Pass, "injected: an OIDC token");
                continue;
            }
            _ if let Some((cloud, by)) = taken.iter().find(|(c, _)| Some(*c) == spec.cloud()) => {
                trace.push(
                    StepKind::Decision,
                    p,
                    Outcome::Fail,
                    format!(
                        "not injected: the pod already gets its {cloud} identity from {by}, and SDKs read one per cloud"
                    ),
                );
                continue;
            }
            (Some(access), _, _, _, trust) => trust.aws.as_ref().map(|t| {
                grants::aws(AwsGrant {
                    source,
                    role_arn: grants::aws_role_arn(access, t, config, ns, policy_name(a.policy)),
                    audience: audience.unwrap_or(&t.audience).to_owned(),
                    expiration,
                    regional: access.sts_regional_endpoints,
                    region: access.region.clone(),
                    skip_containers: BTreeSet::new(),
                }, config)
            }),
            (_, Some(access), _, _, trust) => match trust.gcp.as_ref().map(|t| grants::gcp(source, access, t, audience, expiration, config)) {
                Some(Ok(grant)) => Some(grant),
                Some(Err(e)) => {
                    trace.push(StepKind::Decision, p, Outcome::Fail, format!("not injected: the credential configuration could not be written: {e}"));
                    None
                }
                None => None,
            },
            (_, _, Some(access), _, trust) => trust.azure.as_ref().map(|t| {
                let status = a.policy.status.as_ref().and_then(|s| s.azure.as_ref()).and_then(|s| s.client_id.as_deref());
                if access.client_id.is_none() && status.is_none() {
                    trace.push(StepKind::Inject, p, Outcome::Fail, "the identity's client ID is not known yet (neither spec.azure.clientId nor status): AZURE_CLIENT_ID left out");
                }
                grants::azure_from_policy(source, access, status, t, audience, expiration, config)
            }),
            _ => None,
        };
        if let Some(grant) = grant {
            trace.push(
                StepKind::Decision,
                p,
                Outcome::Pass,
                ["injected: ", grant.cloud.as_str(), " credentials"].concat(),
            );
            taken.push((grant.cloud, grant.source.clone()));
            applied.push(a.key.clone());
            grants.push(grant);
        }
    }
    if !oidc.is_empty() {
        grants.push(grants::oidc(
            &oidc,
            format!("policies {}", oidc_sources.join(", ")),
        ));
    }

    let policy_clouds: Vec<Cloud> = taken.iter().map(|(c, _)| *c).collect();
    let compat_granted = compat_grants(pod, &policy_clouds, bindings, trace)?;
    let compat = compat_granted
        .iter()
        .map(|g| match g.cloud {
            Cloud::Aws => "eks".to_owned(),
            Cloud::Azure => "azure".to_owned(),
            other => other.to_string(),
        })
        .collect();
    grants.extend(compat_granted);

    // The old webhooks' skip lists keep working for their cloud whoever grants it, so a pod
    // moved from an annotation to an AccessPolicy keeps its skipped containers.
    let eks_skip = compat::split_list(annotation(pod, keys::eks::SKIP_CONTAINERS), ',');
    let azure_skip = compat::split_list(annotation(pod, keys::azure_wi::SKIP_CONTAINERS), ';');
    for grant in &mut grants {
        match grant.cloud {
            Cloud::Aws => grant.skip_containers.extend(eks_skip.iter().cloned()),
            Cloud::Azure => grant.skip_containers.extend(azure_skip.iter().cloned()),
            Cloud::Gcp | Cloud::Oidc => {}
        }
    }
    Ok((grants, applied, compat))
}

/// The EKS and Azure compatibility grants, for the clouds no AccessPolicy already covers.
fn compat_grants(
    pod: &Pod,
    policy_clouds: &[Cloud],
    bindings: &Bindings,
    trace: &mut Trace,
) -> Result<Vec<Grant>, Denial> {
    let config = &bindings.config;
    let sa = &bindings.service_account_annotations;
    let mut grants = Vec::new();
    if !policy_clouds.contains(&Cloud::Aws) {
        grants.extend(compat::eks_grant(pod, sa, config, trace));
    } else if sa.contains_key(keys::eks::ROLE_ARN) {
        trace.push(
            StepKind::Compat,
            None,
            Outcome::Info,
            format!(
                "{} on the service account is ignored: an AccessPolicy gives the AWS identity",
                keys::eks::ROLE_ARN
            ),
        );
    }
    if !policy_clouds.contains(&Cloud::Azure) {
        match compat::azure_grant(pod, sa, &config.compat, trace) {
            Ok(grant) => grants.extend(grant),
            Err(message) => {
                trace.push(
                    StepKind::Decision,
                    None,
                    Outcome::Fail,
                    format!("the pod is refused: {message}"),
                );
                return Err(Denial {
                    message: format!("Passport refused the pod: {message}"),
                    policies: Vec::new(),
                    trace: trace.clone(),
                });
            }
        }
    } else if compat::azure_labelled(pod) {
        trace.push(
            StepKind::Compat,
            None,
            Outcome::Info,
            format!(
                "the {} label is ignored: an AccessPolicy gives the Azure identity",
                keys::azure_wi::USE
            ),
        );
    }
    Ok(grants)
}
