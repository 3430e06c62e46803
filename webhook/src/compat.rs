//! Drop-in compatibility with the EKS pod identity webhook (`eks.amazonaws.com/*` service
//! account and pod annotations) and the Azure workload identity webhook
//! (`azure.workload.identity/use: "true"` pod label, `azure.workload.identity/*` annotations),
//! with those webhooks' defaults, so a cluster can swap either for Passport unchanged.
//!
//! Same as the originals: the env names and values, the token paths (Azure's <= v1.5 path,
//! the one DESIGN section 4 fixes), audiences (`sts.amazonaws.com`,
//! `api://AzureADTokenExchange`), expirations (EKS 86400, pod > SA > default, raised to at least
//! 600; Azure 3600, pod > SA > default, outside 3600-86400 refused), EKS regional STS off unless
//! the annotation or the flag says so, EKS's comma- and Azure's semicolon-separated skip lists,
//! Azure leaving `AZURE_CLIENT_ID` out when the service account names no client.
//!
//! Deliberate differences:
//! - Volume names are Passport's (`passport-aws-token`, `passport-azure-token`), not
//!   `aws-iam-token` / `azure-identity-token`; mount paths are the same, and a container that
//!   already mounts something at that path (a pod the old webhook mutated) keeps its mount.
//! - The token volume has `defaultMode: 0644`, so non-root containers read it without an
//!   `fsGroup` (EKS issue #8).
//! - Existing env is detected in `envFrom` too where the keys are known (EKS issue #248).
//! - An AccessPolicy for the same cloud wins over the annotations (the trace says so).
//! - `passport.dev/inject: "false"` and `passport.dev/skip-containers` apply to these modes too.
//! - Not supported: EKS `--compose-role-arn`, the `pod-identity-webhook` ConfigMap, EKS Pod
//!   Identity (container credentials), the Windows token path; Azure's IMDS proxy sidecar
//!   (`inject-proxy-sidecar`) and custom token endpoints (`use-<suffix>`), and v1.6's
//!   per-pod volume name and `wi/token/` path.
//! - Azure refuses pods whose service account is missing; Passport admits them without
//!   credentials (the service account may arrive with the pod: DESIGN section 4 lookups).
//! - Without a configured tenant (the Azure webhook refuses to start without one), labelled
//!   pods whose service account names no tenant get nothing, and the trace says why.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use passport_crds::keys::{azure_wi, eks};

use crate::Config;
use crate::config::CompatConfig;
use crate::grants::{self, AwsGrant, AzureGrant, Grant};
use crate::trace::{Outcome, StepKind, Trace};

fn pod_annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

pub(crate) fn split_list(value: Option<&str>, separator: char) -> BTreeSet<String> {
    value
        .into_iter()
        .flat_map(|v| v.split(separator))
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The EKS webhook's injection for a service account annotated with `eks.amazonaws.com/role-arn`.
pub(crate) fn eks_grant(
    pod: &Pod,
    sa: &BTreeMap<String, String>,
    config: &Config,
    trace: &mut Trace,
) -> Option<Grant> {
    let compat = &config.compat;
    let role_arn = sa.get(eks::ROLE_ARN).filter(|v| !v.is_empty())?;
    if !compat.eks {
        trace.push(
            StepKind::Compat,
            None,
            Outcome::Info,
            format!(
                "the service account has {} but EKS compatibility is off",
                eks::ROLE_ARN
            ),
        );
        return None;
    }
    let audience = sa
        .get(eks::AUDIENCE)
        .cloned()
        .unwrap_or_else(|| compat.eks_audience.clone());
    let regional = match sa.get(eks::STS_REGIONAL_ENDPOINTS).map(String::as_str) {
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            trace.push(
                StepKind::Compat,
                None,
                Outcome::Info,
                format!(
                    "{}={other:?} is neither true nor false; using the default",
                    eks::STS_REGIONAL_ENDPOINTS
                ),
            );
            compat.eks_sts_regional_endpoints
        }
        None => compat.eks_sts_regional_endpoints,
    };
    // Pod beats service account beats the flag, as in the EKS webhook; a value that is not a
    // number is ignored there too.
    let expiration = pod_annotation(pod, eks::TOKEN_EXPIRATION)
        .and_then(|v| v.parse::<i64>().ok())
        .or_else(|| {
            sa.get(eks::TOKEN_EXPIRATION)
                .and_then(|v| v.parse::<i64>().ok())
        })
        .unwrap_or(compat.eks_token_expiration);
    trace.push(
        StepKind::Compat,
        None,
        Outcome::Pass,
        format!(
            "the service account has {}={role_arn} (EKS compatibility)",
            eks::ROLE_ARN
        ),
    );
    Some(grants::aws(
        AwsGrant {
            source: eks::ROLE_ARN.to_owned(),
            role_arn: role_arn.clone(),
            audience,
            expiration,
            regional,
            region: compat.eks_default_region.clone(),
            // Filled in by `mutate`, which applies the EKS skip list to every AWS grant.
            skip_containers: BTreeSet::new(),
        },
        config,
    ))
}

/// Whether the pod carries `azure.workload.identity/use: "true"`.
pub(crate) fn azure_labelled(pod: &Pod) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(azure_wi::USE))
        .is_some_and(|v| v == "true")
}

/// The Azure webhook's injection for a pod labelled `azure.workload.identity/use: "true"`.
/// `Err` carries the refusal the Azure webhook gives for an out-of-range expiration.
pub(crate) fn azure_grant(
    pod: &Pod,
    sa: &BTreeMap<String, String>,
    compat: &CompatConfig,
    trace: &mut Trace,
) -> Result<Option<Grant>, String> {
    if !azure_labelled(pod) {
        return Ok(None);
    }
    if !compat.azure {
        trace.push(
            StepKind::Compat,
            None,
            Outcome::Info,
            format!(
                "the pod has {}=true but Azure compatibility is off",
                azure_wi::USE
            ),
        );
        return Ok(None);
    }
    let Some(tenant_id) = sa
        .get(azure_wi::TENANT_ID)
        .filter(|v| !v.is_empty())
        .cloned()
        .or_else(|| compat.azure_tenant_id.clone())
    else {
        trace.push(StepKind::Compat, None, Outcome::Fail, format!(
            "the pod has {}=true but neither the service account ({}) nor the webhook config names a tenant: nothing injected for it",
            azure_wi::USE, azure_wi::TENANT_ID));
        return Ok(None);
    };
    let expiration = match pod_annotation(pod, azure_wi::TOKEN_EXPIRATION)
        .or_else(|| sa.get(azure_wi::TOKEN_EXPIRATION).map(String::as_str))
    {
        None => 3600,
        Some(text) => match text.parse::<i64>() {
            Ok(seconds) if (3600..=86_400).contains(&seconds) => seconds,
            _ => {
                return Err(format!(
                    "{}={text:?} must be a number of seconds between 3600 and 86400",
                    azure_wi::TOKEN_EXPIRATION
                ));
            }
        },
    };
    let client_id = sa
        .get(azure_wi::CLIENT_ID)
        .filter(|v| !v.is_empty())
        .cloned();
    trace.push(StepKind::Compat, None, Outcome::Pass, format!(
        "the pod has {}=true; client {} in tenant {tenant_id} (Azure workload identity compatibility)",
        azure_wi::USE,
        client_id.as_deref().unwrap_or("(none: AZURE_CLIENT_ID left out)")));
    Ok(Some(grants::azure(AzureGrant {
        source: azure_wi::USE.to_owned(),
        client_id,
        tenant_id,
        authority_host: compat.azure_authority_host.clone(),
        audience: compat.azure_audience.clone(),
        expiration,
        // Filled in by `mutate`, which applies the Azure skip list to every Azure grant.
        skip_containers: BTreeSet::new(),
    })))
}
