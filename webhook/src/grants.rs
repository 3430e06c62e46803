//! What one source of credentials (an AccessPolicy, or a compatibility annotation) puts into a
//! pod: a projected token volume, where it is mounted, the env it sets and the annotations it
//! needs. Built from specs only, never from cloud readiness.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    DownwardAPIProjection, DownwardAPIVolumeFile, EnvVar, ObjectFieldSelector,
    ProjectedVolumeSource, ServiceAccountTokenProjection, Volume, VolumeProjection,
};
use passport_crds::Cloud;
use passport_crds::access_policy::{AwsAccess, AzureAccess, GcpAccess};
use passport_crds::federated_trust::{AwsTrust, AzureTrust, GcpTrust};
use serde::Serialize;

use crate::Config;

/// Where each cloud's files appear in containers. AWS and Azure use the paths of the EKS and
/// Azure (<= v1.5) webhooks so tools and docs written for those keep working.
pub mod paths {
    /// What the names of Passport's volumes start with: a pod volume named otherwise is never
    /// replaced by a mutation.
    pub const VOLUME_PREFIX: &str = "passport-";
    pub const AWS_VOLUME: &str = "passport-aws-token";
    pub const AWS_MOUNT: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
    pub const AWS_TOKEN: &str = "token";
    pub const AZURE_VOLUME: &str = "passport-azure-token";
    pub const AZURE_MOUNT: &str = "/var/run/secrets/azure/tokens";
    pub const AZURE_TOKEN: &str = "azure-identity-token";
    pub const GCP_VOLUME: &str = "passport-gcp";
    pub const GCP_MOUNT: &str = "/var/run/secrets/passport.dev/gcp";
    pub const GCP_TOKEN: &str = "token";
    pub const GCP_CREDENTIALS: &str = "credential-configuration.json";
    pub const OIDC_VOLUME: &str = "passport-oidc-tokens";
    pub const OIDC_MOUNT: &str = "/var/run/secrets/passport.dev/oidc";
    /// Pod annotation holding the GCP credential configuration. It travels with the pod object
    /// itself and reaches the container through a downwardAPI projection, so there is no second
    /// object (a ConfigMap) that could be missing or stale when the pod starts.
    pub const GCP_CREDENTIALS_ANNOTATION: &str = "passport.dev/gcp-credential-configuration";
}

/// Token files must be readable by non-root containers without an `fsGroup` (the EKS webhook's
/// issue #8): 0644. Every container of the pod may mount the token anyway, so the mode only
/// widens access to other users inside the same containers.
const TOKEN_FILE_MODE: i32 = 0o644;

/// Minimum lifetime kube-apiserver issues; the EKS webhook silently raises smaller values too.
const MIN_EXPIRATION: i64 = 600;

/// One source's injection.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub cloud: Cloud,
    /// Who asked for it, for the trace: `policy ns/name` or the compatibility annotation.
    pub source: String,
    pub volume: Volume,
    pub mount_path: String,
    /// Env in groups: a group is left out of a container entirely when the container already
    /// sets any variable of it, so an identity is never half from Passport and half from the
    /// container (e.g. Passport's role with another token file).
    pub env_groups: Vec<Vec<EnvVar>>,
    /// Pod annotations the injection needs (the GCP credential configuration).
    pub annotations: Vec<(String, String)>,
    /// Containers this grant alone skips (the compatibility modes' own skip lists).
    pub skip_containers: BTreeSet<String>,
}

pub(crate) fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

pub(crate) fn token_source(path: &str, audience: &str, expiration: i64) -> VolumeProjection {
    VolumeProjection {
        service_account_token: Some(ServiceAccountTokenProjection {
            audience: Some(audience.to_owned()),
            expiration_seconds: Some(expiration.max(MIN_EXPIRATION)),
            path: path.to_owned(),
            ..ServiceAccountTokenProjection::default()
        }),
        ..VolumeProjection::default()
    }
}

pub(crate) fn projected_volume(name: &str, sources: Vec<VolumeProjection>) -> Volume {
    Volume {
        name: name.to_owned(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(TOKEN_FILE_MODE),
            sources: Some(sources),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// What an AWS grant needs, from a policy or from the EKS annotations.
pub struct AwsGrant {
    pub source: String,
    pub role_arn: String,
    pub audience: String,
    pub expiration: i64,
    pub regional: bool,
    pub region: Option<String>,
    pub skip_containers: BTreeSet<String>,
}

pub fn aws(grant: AwsGrant, config: &Config) -> Grant {
    let token_file = [paths::AWS_MOUNT, "/", paths::AWS_TOKEN].concat();
    let mut env_groups = vec![vec![
        env("AWS_ROLE_ARN", grant.role_arn),
        env("AWS_WEB_IDENTITY_TOKEN_FILE", token_file),
    ]];
    if grant.regional {
        env_groups.push(vec![env("AWS_STS_REGIONAL_ENDPOINTS", "regional")]);
    }
    if let Some(region) = grant.region {
        // One group: a container that sets either region variable keeps both as they are.
        env_groups.push(vec![
            env("AWS_REGION", region.clone()),
            env("AWS_DEFAULT_REGION", region),
        ]);
    }
    if let Some(endpoint) = &config.aws_sts_endpoint {
        env_groups.push(vec![env("AWS_ENDPOINT_URL_STS", endpoint.clone())]);
    }
    Grant {
        cloud: Cloud::Aws,
        source: grant.source,
        volume: projected_volume(
            paths::AWS_VOLUME,
            vec![token_source(
                paths::AWS_TOKEN,
                &grant.audience,
                grant.expiration,
            )],
        ),
        mount_path: paths::AWS_MOUNT.to_owned(),
        env_groups,
        annotations: Vec::new(),
        skip_containers: grant.skip_containers,
    }
}

/// The role a policy's pods assume: `roleArn`, or the role Passport creates under the trust's
/// `rolePath`, named `roleName` or after the cluster, namespace and policy.
pub fn aws_role_arn(
    access: &AwsAccess,
    trust: &AwsTrust,
    config: &Config,
    ns: &str,
    policy: &str,
) -> String {
    if let Some(arn) = &access.role_arn {
        return arn.clone();
    }
    let name = access
        .role_name
        .clone()
        .unwrap_or_else(|| passport_crds::naming::aws_role_name(&config.cluster_name, ns, policy));
    passport_crds::naming::aws_role_arn(
        trust.partition.as_str(),
        &trust.account_id,
        &trust.role_path,
        &name,
    )
}

/// What an Azure grant needs, from a policy or from the Azure webhook's annotations.
pub struct AzureGrant {
    pub source: String,
    /// None: `AZURE_CLIENT_ID` is left out (the Azure webhook omits empty values too).
    pub client_id: Option<String>,
    pub tenant_id: String,
    pub authority_host: String,
    pub audience: String,
    pub expiration: i64,
    pub skip_containers: BTreeSet<String>,
}

pub fn azure(grant: AzureGrant) -> Grant {
    let token_file = [paths::AZURE_MOUNT, "/", paths::AZURE_TOKEN].concat();
    let mut env_groups = Vec::new();
    if let Some(client_id) = grant.client_id {
        env_groups.push(vec![env("AZURE_CLIENT_ID", client_id)]);
    }
    // The Azure webhook skips each existing name on its own; so does Passport for Azure.
    env_groups.push(vec![env("AZURE_TENANT_ID", grant.tenant_id)]);
    env_groups.push(vec![env("AZURE_FEDERATED_TOKEN_FILE", token_file)]);
    env_groups.push(vec![env("AZURE_AUTHORITY_HOST", grant.authority_host)]);
    Grant {
        cloud: Cloud::Azure,
        source: grant.source,
        volume: projected_volume(
            paths::AZURE_VOLUME,
            vec![token_source(
                paths::AZURE_TOKEN,
                &grant.audience,
                grant.expiration,
            )],
        ),
        mount_path: paths::AZURE_MOUNT.to_owned(),
        env_groups,
        annotations: Vec::new(),
        skip_containers: grant.skip_containers,
    }
}

pub fn azure_from_policy(
    source: String,
    access: &AzureAccess,
    client_id_status: Option<&str>,
    trust: &AzureTrust,
    audience: Option<&str>,
    expiration: i64,
    config: &Config,
) -> Grant {
    azure(AzureGrant {
        source,
        client_id: access
            .client_id
            .clone()
            .or_else(|| client_id_status.map(str::to_owned)),
        tenant_id: trust.tenant_id.clone(),
        authority_host: config
            .azure_authority_host
            .clone()
            .unwrap_or_else(|| trust.authority_host.clone()),
        audience: audience.unwrap_or(&trust.audience).to_owned(),
        expiration,
        skip_containers: BTreeSet::new(),
    })
}

/// `projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`.
pub fn gcp_provider_name(trust: &GcpTrust) -> String {
    passport_crds::naming::gcp_provider_name(
        &trust.project_number,
        &trust.pool_id,
        &trust.provider_id,
    )
}

/// The `external_account` credential configuration (AIP-4117) the GCP SDKs read from
/// `GOOGLE_APPLICATION_CREDENTIALS`. Field order is fixed by the struct, so the text is stable
/// and reinvocation writes the same annotation.
#[derive(Serialize)]
struct ExternalAccount<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    audience: String,
    subject_token_type: &'static str,
    token_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_account_impersonation_url: Option<String>,
    credential_source: CredentialSource,
}

#[derive(Serialize)]
struct CredentialSource {
    file: String,
    format: CredentialFormat,
}

#[derive(Serialize)]
struct CredentialFormat {
    #[serde(rename = "type")]
    kind: &'static str,
}

pub fn gcp_credential_configuration(
    access: &GcpAccess,
    trust: &GcpTrust,
    config: &Config,
) -> Result<String, serde_json::Error> {
    let base = config.gcp_iam_credentials_url.trim_end_matches('/');
    serde_json::to_string(&ExternalAccount {
        kind: "external_account",
        audience: format!("//iam.googleapis.com/{}", gcp_provider_name(trust)),
        subject_token_type: "urn:ietf:params:oauth:token-type:jwt",
        token_url: &config.gcp_token_url,
        service_account_impersonation_url: access.service_account.as_ref().map(|email| {
            format!("{base}/v1/projects/-/serviceAccounts/{email}:generateAccessToken")
        }),
        credential_source: CredentialSource {
            file: format!("{}/{}", paths::GCP_MOUNT, paths::GCP_TOKEN),
            format: CredentialFormat { kind: "text" },
        },
    })
}

pub fn gcp(
    source: String,
    access: &GcpAccess,
    trust: &GcpTrust,
    audience: Option<&str>,
    expiration: i64,
    config: &Config,
) -> Result<Grant, serde_json::Error> {
    let configuration = gcp_credential_configuration(access, trust, config)?;
    let default_audience = format!("//iam.googleapis.com/{}", gcp_provider_name(trust));
    let audience = audience.unwrap_or(&default_audience);
    let credentials = DownwardAPIProjection {
        items: Some(vec![DownwardAPIVolumeFile {
            path: paths::GCP_CREDENTIALS.to_owned(),
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".to_owned()),
                field_path: format!(
                    "metadata.annotations['{}']",
                    paths::GCP_CREDENTIALS_ANNOTATION
                ),
            }),
            ..DownwardAPIVolumeFile::default()
        }]),
    };
    Ok(Grant {
        cloud: Cloud::Gcp,
        source,
        volume: projected_volume(
            paths::GCP_VOLUME,
            vec![
                token_source(paths::GCP_TOKEN, audience, expiration),
                VolumeProjection {
                    downward_api: Some(credentials),
                    ..VolumeProjection::default()
                },
            ],
        ),
        mount_path: paths::GCP_MOUNT.to_owned(),
        env_groups: vec![vec![env(
            "GOOGLE_APPLICATION_CREDENTIALS",
            format!("{}/{}", paths::GCP_MOUNT, paths::GCP_CREDENTIALS),
        )]],
        annotations: vec![(paths::GCP_CREDENTIALS_ANNOTATION.to_owned(), configuration)],
        skip_containers: BTreeSet::new(),
    })
}

/// One OIDC policy's token.
pub struct OidcToken {
    pub policy: String,
    pub audience: String,
    pub expiration: i64,
}

/// All OIDC policies share one volume, a token per policy under `<policy>/token`. One policy
/// sets `PASSPORT_OIDC_TOKEN_FILE`; several set `PASSPORT_OIDC_TOKEN_FILE_<POLICY>` each
/// (upper case, other characters as `_`), so no variable's meaning depends on the others.
pub fn oidc(tokens: &[OidcToken], sources: String) -> Grant {
    let mut projections = Vec::new();
    let mut env_groups = Vec::new();
    for token in tokens {
        let path = format!("{}/token", token.policy);
        projections.push(token_source(&path, &token.audience, token.expiration));
        let name = if tokens.len() == 1 {
            "PASSPORT_OIDC_TOKEN_FILE".to_owned()
        } else {
            let suffix: String = token
                .policy
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("PASSPORT_OIDC_TOKEN_FILE_{suffix}")
        };
        env_groups.push(vec![env(&name, format!("{}/{path}", paths::OIDC_MOUNT))]);
    }
    Grant {
        cloud: Cloud::Oidc,
        source: sources,
        volume: projected_volume(paths::OIDC_VOLUME, projections),
        mount_path: paths::OIDC_MOUNT.to_owned(),
        env_groups,
        annotations: Vec::new(),
        skip_containers: BTreeSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::paths;

    /// The review parses whole only the volumes named with this prefix (`pod_in`): a volume of
    /// Passport's named otherwise would never be brought up to date on reinvocation.
    #[test]
    fn every_volume_of_passports_has_its_prefix() {
        for name in [
            paths::AWS_VOLUME,
            paths::AZURE_VOLUME,
            paths::GCP_VOLUME,
            paths::OIDC_VOLUME,
        ] {
            assert!(name.starts_with(paths::VOLUME_PREFIX), "{name}");
        }
    }
}
