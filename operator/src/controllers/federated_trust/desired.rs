//! What a FederatedTrust asks of its cloud: the IAM OIDC provider (AWS), the workload identity
//! pool and provider (GCP), or nothing to create (Azure, other relying parties). Pure.

use std::collections::BTreeMap;

use passport_crds::{Cloud, FederatedTrust, conditions::Reason, federated_trust::JwksSource};

use super::super::Refusal;
use crate::cloud::{OidcProviderIntent, Owner, WorkloadIdentityIntent};

/// What the trust's reconcile needs besides the object.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// `--cluster-name`.
    pub cluster: &'a str,
    /// The issuer discovered from the API server, used when `spec.issuer.url` is empty.
    pub discovered_issuer: Option<&'a str>,
    /// The cluster's JWKS (`/openid/v1/jwks`), uploaded for `jwks: FromCluster`.
    pub cluster_jwks: Option<&'a str>,
}

/// The cloud object a trust needs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum TrustObject {
    AwsOidcProvider(OidcProviderIntent),
    GcpWorkloadIdentityProvider(WorkloadIdentityIntent),
    /// Azure and other relying parties: nothing to create; they are configured with the issuer.
    None,
}

/// A trust's desired state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustPlan {
    #[serde(serialize_with = "cloud_str")]
    pub cloud: Cloud,
    pub issuer: String,
    pub object: TrustObject,
}

fn cloud_str<S: serde::Serializer>(cloud: &Cloud, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(cloud.as_str())
}

/// Google's attribute mapping when the trust sets none: the token's subject, namespace and
/// service account name.
pub fn default_attribute_mapping() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("google.subject".to_owned(), "assertion.sub".to_owned()),
        (
            "attribute.namespace".to_owned(),
            "assertion['kubernetes.io']['namespace']".to_owned(),
        ),
        (
            "attribute.service_account_name".to_owned(),
            "assertion['kubernetes.io']['serviceaccount']['name']".to_owned(),
        ),
    ])
}

/// The issuer a trust uses: its spec, else the one discovered from the API server, exactly as
/// tokens carry it in `iss`. A trailing `/` (AKS issuers have one) is kept: Entra and Google
/// compare the federated credential's or provider's issuer with `iss` byte for byte.
pub fn issuer(trust: &FederatedTrust, discovered: Option<&str>) -> Result<String, Refusal> {
    trust
        .spec
        .issuer_url()
        .or(discovered)
        .map(str::to_owned)
        .ok_or_else(|| {
            Refusal::new(
                Reason::IssuerUnreachable,
                "the cluster's issuer is unknown: set spec.issuer.url, or let Passport read it from \
                 the API server's /.well-known/openid-configuration",
            )
        })
}

/// The trust's desired cloud object.
pub fn build(trust: &FederatedTrust, inputs: &Inputs<'_>) -> Result<TrustPlan, Refusal> {
    let name = trust.metadata.name.clone().unwrap_or_default();
    let owner = Owner::trust(inputs.cluster, &name);
    let cloud = trust.spec.cloud().ok_or_else(|| {
        Refusal::new(
            Reason::CloudMismatch,
            "set exactly one of spec.aws, spec.gcp, spec.azure or spec.oidc",
        )
    })?;
    let issuer = issuer(trust, inputs.discovered_issuer)?;
    let object = if let Some(aws) = &trust.spec.aws {
        TrustObject::AwsOidcProvider(OidcProviderIntent {
            account_id: aws.account_id.clone(),
            partition: aws.partition.as_str().to_owned(),
            issuer: issuer.clone(),
            audience: aws.audience.clone(),
            owner,
            tags: aws.tags.clone(),
        })
    } else if let Some(gcp) = &trust.spec.gcp {
        let jwks_json = match gcp.jwks {
            JwksSource::FromIssuer => None,
            JwksSource::FromCluster => Some(
                inputs
                    .cluster_jwks
                    .ok_or_else(|| {
                        Refusal::new(
                            Reason::IssuerUnreachable,
                            "jwks: FromCluster needs the cluster's /openid/v1/jwks, which could \
                             not be read",
                        )
                    })?
                    .to_owned(),
            ),
        };
        TrustObject::GcpWorkloadIdentityProvider(WorkloadIdentityIntent {
            project_number: gcp.project_number.clone(),
            pool_id: gcp.pool_id.clone(),
            provider_id: gcp.provider_id.clone(),
            issuer: issuer.clone(),
            allowed_audiences: Vec::new(),
            attribute_mapping: gcp
                .attribute_mapping
                .clone()
                .unwrap_or_else(default_attribute_mapping),
            attribute_condition: gcp.attribute_condition.clone(),
            jwks_json,
            owner,
        })
    } else {
        TrustObject::None
    };
    Ok(TrustPlan {
        cloud,
        issuer,
        object,
    })
}

/// The audience GCP tokens carry for a trust's provider.
pub fn gcp_audience(project_number: &str, pool: &str, provider: &str) -> String {
    format!(
        "//iam.googleapis.com/{}",
        passport_crds::naming::gcp_provider_name(project_number, pool, provider)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust(yaml: &str) -> FederatedTrust {
        serde_yaml::from_str(yaml).unwrap()
    }

    const INPUTS: Inputs<'static> = Inputs {
        cluster: "prod",
        discovered_issuer: Some("https://kubernetes.default.svc"),
        cluster_jwks: Some(r#"{"keys":[]}"#),
    };

    #[test]
    fn an_aws_trust_wants_a_tagged_oidc_provider_for_its_issuer() {
        let t = trust(
            "metadata: {name: aws-prod}\nspec:\n  issuer: {url: https://oidc.example.com/c1}\n  aws: {accountId: '123456789012', tags: {team: platform}}\n",
        );
        let plan = build(&t, &INPUTS).unwrap();
        let TrustObject::AwsOidcProvider(intent) = plan.object else {
            panic!("{plan:?}")
        };
        assert_eq!(intent.issuer, "https://oidc.example.com/c1");
        assert_eq!(intent.audience, "sts.amazonaws.com");
        assert_eq!(intent.owner, Owner::trust("prod", "aws-prod"));
        assert_eq!(intent.tags["team"], "platform");
    }

    #[test]
    fn an_aks_issuer_keeps_its_trailing_slash_as_tokens_carry_it() {
        let aks =
            "https://eastus.oic.prod-aks.azure.com/72f988bf-86f1-41af-91ab-2d7cd011db47/0c1e5a3b/";
        let t = trust(&format!(
            "metadata: {{name: aks}}\nspec:\n  issuer: {{url: '{aks}'}}\n  azure: {{tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47}}\n"
        ));
        assert_eq!(build(&t, &INPUTS).unwrap().issuer, aks);
        let discovered = Inputs {
            discovered_issuer: Some(aks),
            ..INPUTS
        };
        let t = trust("metadata: {name: o}\nspec:\n  oidc: {allowedAudiences: [vault]}\n");
        assert_eq!(build(&t, &discovered).unwrap().issuer, aks);
    }

    #[test]
    fn the_discovered_issuer_is_used_when_the_spec_has_none() {
        let t = trust("metadata: {name: o}\nspec:\n  oidc: {allowedAudiences: [vault]}\n");
        let plan = build(&t, &INPUTS).unwrap();
        assert_eq!(plan.issuer, "https://kubernetes.default.svc");
        assert_eq!(plan.object, TrustObject::None);
        let unknown = Inputs {
            discovered_issuer: None,
            ..INPUTS
        };
        assert_eq!(
            build(&t, &unknown).unwrap_err().reason,
            Reason::IssuerUnreachable
        );
    }

    #[test]
    fn a_gcp_trust_uploads_the_cluster_keys_only_when_asked() {
        let yaml = "metadata: {name: g}\nspec:\n  gcp: {projectId: my-project, projectNumber: '1', poolId: pool-1, providerId: prov-1, jwks: JWKS}\n";
        let from_cluster = build(&trust(&yaml.replace("JWKS", "FromCluster")), &INPUTS).unwrap();
        let TrustObject::GcpWorkloadIdentityProvider(intent) = from_cluster.object else {
            panic!()
        };
        assert_eq!(intent.jwks_json.as_deref(), Some(r#"{"keys":[]}"#));
        assert_eq!(intent.attribute_mapping, default_attribute_mapping());
        let from_issuer = build(&trust(&yaml.replace("JWKS", "FromIssuer")), &INPUTS).unwrap();
        let TrustObject::GcpWorkloadIdentityProvider(intent) = from_issuer.object else {
            panic!()
        };
        assert_eq!(intent.jwks_json, None);
    }
}
