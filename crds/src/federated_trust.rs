//! `FederatedTrust`: trust between the cluster's service-account token issuer and one cloud
//! account (cluster-scoped, owned by the cluster admin).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Trust between this cluster's service-account token issuer and one cloud account. Passport
/// makes the cloud trust the issuer (an AWS IAM OIDC provider, a GCP workload identity pool and
/// provider, or, for Azure and other relying parties, nothing to create) and lets the
/// AccessPolicies of the selected namespaces use it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "passport.dev",
    version = "v1alpha1",
    kind = "FederatedTrust",
    doc = "Trust between this cluster's service-account token issuer and one cloud account (AWS, Google Cloud, Azure or another OIDC relying party). Cluster-scoped; AccessPolicies in the namespaces it selects grant access through it.",
    plural = "federatedtrusts",
    shortname = "ft",
    category = "passport",
    status = "FederatedTrustStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Cloud","type":"string","jsonPath":".status.cloud"}"#,
    printcolumn = r#"{"name":"Account","type":"string","jsonPath":".status.account"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.aws) || has(self.gcp) || has(self.azure) || has(self.oidc)")
        .message("set one cloud block: aws, gcp, azure or oidc"),
    validation = Rule::new("(has(self.aws) ? 1 : 0) + (has(self.gcp) ? 1 : 0) + (has(self.azure) ? 1 : 0) + (has(self.oidc) ? 1 : 0) <= 1")
        .message("set only one of aws, gcp, azure or oidc: a FederatedTrust trusts one cloud account; create one FederatedTrust per account"),
    validation = Rule::new("has(self.aws) == has(oldSelf.aws) && has(self.gcp) == has(oldSelf.gcp) && has(self.azure) == has(oldSelf.azure) && has(self.oidc) == has(oldSelf.oidc)")
        .message("the cloud of a FederatedTrust cannot change; create a new FederatedTrust instead")
)]
pub struct FederatedTrustSpec {
    /// The cluster's service-account token issuer. When absent, Passport reads `issuer` from the
    /// API server's `/.well-known/openid-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<IssuerSpec>,

    /// Trust an AWS account: Passport creates (or adopts) an IAM OIDC provider for the issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsTrust>,

    /// Trust a Google Cloud project: Passport creates a workload identity pool and OIDC provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpTrust>,

    /// Trust a Microsoft Entra tenant: AccessPolicies add federated identity credentials to
    /// user-assigned managed identities in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureTrust>,

    /// Trust any other relying party that validates the cluster's tokens itself (Vault JWT
    /// auth, Snowflake, Databricks, an in-house API). Nothing is created in a cloud; the status
    /// shows the issuer and JWKS URL to configure on the relying party's side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcTrust>,

    /// Which namespaces' AccessPolicies may use this trust, with Kubernetes label-selector
    /// semantics: absent selects no namespace, `{}` selects every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// What happens to the cloud objects Passport created when this FederatedTrust is deleted:
    /// `Delete` removes them, `Retain` leaves them. Objects Passport did not create are never
    /// deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Where the cluster's tokens come from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IssuerSpec {
    /// The issuer URL exactly as it appears in the tokens' `iss` claim, e.g.
    /// `https://oidc.example.com/clusters/prod`. AWS and Azure fetch
    /// `<url>/.well-known/openid-configuration` and the JWKS from it, so it must be public HTTPS.
    /// Empty: read from the API server (`/.well-known/openid-configuration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(
        validation = Rule::new("self.startsWith('https://')")
            .message("issuer.url must be an https:// URL: the clouds fetch the issuer's keys only over HTTPS"),
        validation = Rule::new("!self.contains('?') && !self.contains('#')")
            .message("issuer.url must not contain a query (?) or fragment (#)")
    )]
    pub url: Option<String>,

    /// Publish the cluster's discovery document and JWKS (read from the API server) to a
    /// bucket, for clusters without a public issuer (kind, kubeadm, k3s, on-premises). Passport
    /// keeps them current, and through a key rotation publishes the old and new keys together
    /// until every token signed with the old key has expired. The cluster's
    /// `--service-account-issuer` must be the URL the documents are served at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<IssuerPublish>,
}

/// Where Passport publishes the issuer: one of `s3`, `gcs` or `azureBlob`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(has(self.s3) ? 1 : 0) + (has(self.gcs) ? 1 : 0) + (has(self.azureBlob) ? 1 : 0) == 1")
        .message("issuer.publish needs exactly one of s3, gcs or azureBlob")
)]
pub struct IssuerPublish {
    /// An S3 bucket, written with the operator's AWS credentials (`s3:PutObject`,
    /// `s3:GetObject`). Its objects must be publicly readable (a bucket policy, or a CDN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Publish>,
    /// A Google Cloud Storage bucket, written with the operator's Google credentials
    /// (`storage.objects.create`, `storage.objects.get`, `storage.objects.delete` to overwrite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsPublish>,
    /// An Azure Blob container, written with the operator's Azure credentials (Storage Blob
    /// Data Contributor). Blob public access must be on for it, or a CDN in front.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_blob: Option<AzureBlobPublish>,
    /// Where the documents are served publicly, when a CDN or custom domain fronts the bucket,
    /// e.g. `https://oidc.example.com/clusters/prod`. Default: the bucket's own HTTPS URL
    /// (`https://<bucket>.s3.<region>.amazonaws.com/<prefix>`,
    /// `https://storage.googleapis.com/<bucket>/<prefix>`, `<accountUrl>/<container>/<prefix>`).
    /// It must equal the cluster's issuer: every token's `iss` names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') && !self.endsWith('/')")
        .message("issuer.publish.publicUrl must be an https:// URL without a trailing slash"))]
    pub public_url: Option<String>,
}

/// An S3 bucket to publish the issuer to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3Publish {
    /// The bucket's name, e.g. `acme-oidc`.
    #[schemars(length(min = 3, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9][a-z0-9.-]*[a-z0-9]$')")
        .message("s3.bucket must be an S3 bucket name: lowercase letters, digits, dots and hyphens"))]
    pub bucket: String,
    /// The bucket's region, e.g. `eu-west-1`.
    #[schemars(length(min = 1, max = 32))]
    pub region: String,
    /// A key prefix under which the documents go, e.g. `clusters/prod`. Empty: the bucket's root.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.endsWith('/')")
        .message("prefix must not start or end with a slash, e.g. clusters/prod"))]
    pub prefix: String,
}

/// A Google Cloud Storage bucket to publish the issuer to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GcsPublish {
    /// The bucket's name, e.g. `acme-oidc`.
    #[schemars(length(min = 3, max = 222))]
    pub bucket: String,
    /// A name prefix under which the documents go, e.g. `clusters/prod`. Empty: the bucket's root.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.endsWith('/')")
        .message("prefix must not start or end with a slash, e.g. clusters/prod"))]
    pub prefix: String,
}

/// An Azure Blob container to publish the issuer to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AzureBlobPublish {
    /// The storage account's blob endpoint, e.g. `https://acmeoidc.blob.core.windows.net`.
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') && !self.endsWith('/')")
        .message("azureBlob.accountUrl must be the account's https:// blob endpoint without a trailing slash"))]
    pub account_url: String,
    /// The container, e.g. `oidc`.
    #[schemars(length(min = 3, max = 63))]
    pub container: String,
    /// A blob name prefix under which the documents go, e.g. `clusters/prod`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.endsWith('/')")
        .message("prefix must not start or end with a slash, e.g. clusters/prod"))]
    pub prefix: String,
}

/// AWS side of a trust.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AwsTrust {
    /// The 12-digit AWS account ID, e.g. `123456789012`.
    #[schemars(length(max = 12))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{12}$')")
        .message("accountId must be the 12-digit AWS account ID, e.g. 123456789012"))]
    pub account_id: String,

    /// The AWS partition: `aws`, `aws-cn` or `aws-us-gov`.
    #[serde(default)]
    pub partition: AwsPartition,

    /// The audience (client ID) the IAM OIDC provider accepts and pods' tokens carry.
    #[serde(default = "default_aws_audience")]
    #[schemars(length(min = 1, max = 255))]
    pub audience: String,

    /// IAM path for the roles Passport creates, e.g. `/passport/`.
    #[serde(default = "default_role_path")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self == '/' || self.matches('^/[!-~]+/$')")
        .message("rolePath must start and end with a slash, e.g. /passport/ or /teams/payments/"))]
    pub role_path: String,

    /// Existing roles that AccessPolicies may adopt with `roleArn`, as glob patterns
    /// (`*` matches any run of characters), e.g. `arn:aws:iam::123456789012:role/apps/*`.
    /// Empty: no existing role may be adopted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 2048)))]
    #[x_kube(validation = Rule::new("self.all(p, p.startsWith('arn:'))")
        .message("allowedRoleArns entries are role ARN patterns starting with arn:, e.g. arn:aws:iam::123456789012:role/apps/*"))]
    pub allowed_role_arns: Vec<String>,

    /// ARN of a managed policy attached as the permissions boundary of every role Passport
    /// creates under this trust, e.g. `arn:aws:iam::123456789012:policy/passport-boundary`. A
    /// role's effective permissions never exceed the boundary, whatever its AccessPolicy attaches,
    /// so a compromised namespace or operator cannot mint a more powerful role. Grant the operator
    /// `iam:CreateRole` only with the `iam:PermissionsBoundary` condition on this ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^arn:aws(-cn|-us-gov)?:iam::([0-9]{12}|aws):policy/.+$')")
        .message("permissionsBoundaryArn must be an IAM managed policy ARN, e.g. arn:aws:iam::123456789012:policy/passport-boundary"))]
    pub permissions_boundary_arn: Option<String>,

    /// Tags added to every IAM object Passport creates, next to its ownership tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 40))]
    pub tags: BTreeMap<String, String>,
}

fn default_aws_audience() -> String {
    "sts.amazonaws.com".to_owned()
}

fn default_role_path() -> String {
    "/passport/".to_owned()
}

/// An AWS partition.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AwsPartition {
    /// Commercial regions.
    #[default]
    #[serde(rename = "aws")]
    Aws,
    /// China regions.
    #[serde(rename = "aws-cn")]
    AwsCn,
    /// GovCloud (US) regions.
    #[serde(rename = "aws-us-gov")]
    AwsUsGov,
}

impl AwsPartition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::AwsCn => "aws-cn",
            Self::AwsUsGov => "aws-us-gov",
        }
    }
}

/// Google Cloud side of a trust.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.poolId == oldSelf.poolId && self.providerId == oldSelf.providerId")
        .message("poolId and providerId cannot change: GCP keeps deleted IDs for 30 days; create a new FederatedTrust instead")
)]
pub struct GcpTrust {
    /// The project ID, e.g. `my-project`.
    #[schemars(length(max = 30))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z][a-z0-9-]{4,28}[a-z0-9]$')")
        .message("projectId must be 6-30 lowercase letters, digits or hyphens, starting with a letter, e.g. my-project"))]
    pub project_id: String,

    /// The project number, e.g. `123456789012`
    /// (`gcloud projects describe <projectId> --format='value(projectNumber)'`).
    #[schemars(length(max = 20))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{1,20}$')")
        .message("projectNumber must be the numeric project number, e.g. 123456789012, not the project ID"))]
    pub project_number: String,

    /// The workload identity pool ID: 4-32 lowercase letters, digits or hyphens, not starting
    /// with `gcp-`.
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9-]{4,32}$') && !self.startsWith('gcp-')")
        .message("poolId must be 4-32 lowercase letters, digits or hyphens and must not start with gcp-"))]
    pub pool_id: String,

    /// The workload identity pool provider ID, with the same rules as `poolId`.
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9-]{4,32}$') && !self.startsWith('gcp-')")
        .message("providerId must be 4-32 lowercase letters, digits or hyphens and must not start with gcp-"))]
    pub provider_id: String,

    /// Attribute mapping of the provider (target attribute to CEL expression over `assertion`).
    /// Default: `google.subject=assertion.sub`,
    /// `attribute.namespace=assertion['kubernetes.io']['namespace']`,
    /// `attribute.service_account_name=assertion['kubernetes.io']['serviceaccount']['name']`.
    /// GCP limits `google.subject` to 127 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 52))]
    #[x_kube(validation = Rule::new("'google.subject' in self")
        .message("attributeMapping must map google.subject, e.g. google.subject: assertion.sub"))]
    pub attribute_mapping: Option<BTreeMap<String, String>>,

    /// Optional CEL condition every token must satisfy, e.g.
    /// `assertion['kubernetes.io']['namespace'] != 'kube-system'`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub attribute_condition: Option<String>,

    /// Where GCP gets the issuer's keys: `FromIssuer` (GCP fetches them from the public issuer)
    /// or `FromCluster` (Passport uploads the cluster's `/openid/v1/jwks` as the provider's
    /// `jwksJson` and re-uploads it when the keys rotate; works for private clusters).
    #[serde(default)]
    pub jwks: JwksSource,

    /// Google service accounts AccessPolicies may impersonate, as glob patterns, e.g.
    /// `*@my-project.iam.gserviceaccount.com`. Empty: none (only `direct` access).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 320)))]
    pub allowed_service_accounts: Vec<String>,
}

/// Where GCP gets the issuer's signing keys.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum JwksSource {
    /// GCP fetches the keys from the issuer's public discovery document.
    #[default]
    FromIssuer,
    /// Passport uploads the cluster's JWKS inline and keeps it current.
    FromCluster,
}

/// Microsoft Entra side of a trust.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AzureTrust {
    /// The Entra tenant ID (a GUID).
    #[schemars(length(max = 36))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')")
        .message("tenantId must be the tenant's GUID, e.g. 72f988bf-86f1-41af-91ab-2d7cd011db47"))]
    pub tenant_id: String,

    /// The Entra authority host pods exchange tokens with.
    #[serde(default = "default_authority_host")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://')")
        .message("authorityHost must be an https:// URL, e.g. https://login.microsoftonline.com/"))]
    pub authority_host: String,

    /// The audience of the federated credentials and of pods' tokens.
    #[serde(default = "default_azure_audience")]
    #[schemars(length(min = 1, max = 600))]
    pub audience: String,

    /// User-assigned managed identities AccessPolicies may use, as glob patterns over resource
    /// IDs, e.g. `/subscriptions/<sub>/resourceGroups/apps/providers/Microsoft.ManagedIdentity/userAssignedIdentities/*`.
    /// Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    #[x_kube(validation = Rule::new("self.all(p, p.startsWith('/subscriptions/'))")
        .message("allowedIdentities entries are resource ID patterns starting with /subscriptions/"))]
    pub allowed_identities: Vec<String>,
}

fn default_authority_host() -> String {
    "https://login.microsoftonline.com/".to_owned()
}

fn default_azure_audience() -> String {
    "api://AzureADTokenExchange".to_owned()
}

/// A relying party other than the three clouds.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OidcTrust {
    /// Audiences AccessPolicies may request tokens for, as glob patterns, e.g. `vault` or
    /// `https://*.snowflakecomputing.com`.
    #[schemars(length(max = 64), inner(length(max = 256)))]
    #[x_kube(validation = Rule::new("self.size() > 0")
        .message("oidc.allowedAudiences needs at least one audience pattern"))]
    pub allowed_audiences: Vec<String>,
}

/// What to do with created cloud objects when their Passport resource is deleted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Delete the cloud objects Passport created.
    #[default]
    Delete,
    /// Leave them in the cloud.
    Retain,
}

/// Observed state of a FederatedTrust.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FederatedTrustStatus {
    /// `Ready`, `IssuerReachable` and `CloudSynced`, kstatus-style.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The cloud this trust points at: `aws`, `gcp`, `azure` or `oidc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
    /// The account, project or tenant, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The issuer in use (from the spec or discovered from the API server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The issuer's JWKS URL, to configure on relying parties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// AWS outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsTrustStatus>,
    /// GCP outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpTrustStatus>,
    /// Azure outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureTrustStatus>,
    /// What Passport published for `spec.issuer.publish`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publication: Option<PublicationStatus>,
}

/// The issuer's publication.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PublicationStatus {
    /// The public URL the documents are served at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The key IDs of the published JWKS that the cluster still signs or verifies with.
    // Always written, empty too: `keys: []` says the publication holds none of the cluster's.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Keys the cluster no longer has, still published until the tokens signed with them have
    /// expired.
    #[serde(default)]
    pub retiring_keys: Vec<RetiringKey>,
}

/// A key kept in the published JWKS through a rotation.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RetiringKey {
    /// The key's `kid`.
    pub kid: String,
    /// When Passport first saw the cluster without this key (RFC 3339).
    pub since: String,
    /// When it is dropped from the published JWKS (RFC 3339).
    pub until: String,
}

/// AWS outputs of a trust.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AwsTrustStatus {
    /// ARN of the IAM OIDC provider for the issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_provider_arn: Option<String>,
    /// Whether Passport created the provider (and so may delete it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
}

/// GCP outputs of a trust.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GcpTrustStatus {
    /// Full resource name of the provider:
    /// `projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_name: Option<String>,
    /// The audience pods' tokens carry: `//iam.googleapis.com/<providerName>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// Azure outputs of a trust.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AzureTrustStatus {
    /// The issuer written into federated identity credentials (must equal tokens' `iss`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

impl FederatedTrustSpec {
    /// The cloud this trust points at.
    pub fn cloud(&self) -> Option<crate::Cloud> {
        crate::Cloud::only_one(
            self.aws.is_some(),
            self.gcp.is_some(),
            self.azure.is_some(),
            self.oidc.is_some(),
        )
    }

    /// `spec.issuer.url`; None means "read it from the API server" (with or without `publish`).
    pub fn issuer_url(&self) -> Option<&str> {
        self.issuer.as_ref().and_then(|i| i.url.as_deref())
    }
}
