//! Webhook configuration: the endpoints written into pods and the defaults of the drop-in
//! compatibility modes. Plain data, set once at start-up by the server (flags) and by tests.

/// What the webhook writes into pods beyond what the AccessPolicies and FederatedTrusts say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The cluster name, part of the IAM role names Passport creates
    /// (`crds::naming::aws_role_name`).
    pub cluster_name: String,
    /// `AWS_ENDPOINT_URL_STS` for every AWS injection (sovereign partitions, the local stack).
    /// None: the SDK's default endpoint resolution.
    pub aws_sts_endpoint: Option<String>,
    /// `token_url` of GCP credential configurations.
    pub gcp_token_url: String,
    /// Base URL of the IAM credentials API; impersonation calls
    /// `<base>/v1/projects/-/serviceAccounts/<email>:generateAccessToken`.
    pub gcp_iam_credentials_url: String,
    /// Overrides every Azure trust's `authorityHost` (the local stack points it at its Entra
    /// fake). None: the trust's value.
    pub azure_authority_host: Option<String>,
    /// Defaults of the EKS and Azure compatibility modes.
    pub compat: CompatConfig,
}

impl Config {
    /// Public-cloud endpoints for the cluster `cluster_name`.
    pub fn new(cluster_name: impl Into<String>) -> Self {
        Self {
            cluster_name: cluster_name.into(),
            aws_sts_endpoint: None,
            gcp_token_url: "https://sts.googleapis.com/v1/token".to_owned(),
            gcp_iam_credentials_url: "https://iamcredentials.googleapis.com".to_owned(),
            azure_authority_host: None,
            compat: CompatConfig::default(),
        }
    }
}

/// The flags of the EKS pod identity webhook and the Azure workload identity webhook that
/// shape what their annotations inject, with those webhooks' defaults, so that swapping either
/// for Passport changes nothing in running workloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompatConfig {
    /// Honour `eks.amazonaws.com/role-arn` on service accounts.
    pub eks: bool,
    /// EKS `--token-audience`: `sts.amazonaws.com`.
    pub eks_audience: String,
    /// EKS `--token-expiration`: 86400.
    pub eks_token_expiration: i64,
    /// EKS `--sts-regional-endpoint`: false (the annotation overrides it).
    pub eks_sts_regional_endpoints: bool,
    /// EKS `--aws-default-region`: unset, so no region is injected.
    pub eks_default_region: Option<String>,
    /// Honour `azure.workload.identity/use: "true"` pod labels.
    pub azure: bool,
    /// The Azure webhook's `AZURE_TENANT_ID` (required by it; here, without it, labelled pods
    /// whose service account names no tenant get nothing and the trace says why).
    pub azure_tenant_id: Option<String>,
    /// The authority host of `AZURE_ENVIRONMENT=AzurePublicCloud`.
    pub azure_authority_host: String,
    /// `api://AzureADTokenExchange`.
    pub azure_audience: String,
}

impl Default for CompatConfig {
    fn default() -> Self {
        Self {
            eks: true,
            eks_audience: "sts.amazonaws.com".to_owned(),
            eks_token_expiration: 86_400,
            eks_sts_regional_endpoints: false,
            eks_default_region: None,
            azure: true,
            azure_tenant_id: None,
            azure_authority_host: "https://login.microsoftonline.com/".to_owned(),
            azure_audience: "api://AzureADTokenExchange".to_owned(),
        }
    }
}
