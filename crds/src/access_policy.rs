//! `AccessPolicy`: which service accounts of a namespace may act as which cloud identity, and
//! under which conditions (namespaced, owned by the app team).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Lets service accounts in this namespace act as one cloud identity through a FederatedTrust.
/// Passport makes the cloud side accept their tokens (role trust policy, workload identity
/// binding, federated identity credential) and its webhook gives matching pods short-lived
/// projected tokens plus the environment and files the cloud SDKs read.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "passport.dev",
    version = "v1alpha1",
    kind = "AccessPolicy",
    doc = "Which service accounts of this namespace may act as which cloud identity through a FederatedTrust, and under which conditions.",
    plural = "accesspolicies",
    shortname = "ap",
    category = "passport",
    namespaced,
    status = "AccessPolicyStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Cloud","type":"string","jsonPath":".status.cloud"}"#,
    printcolumn = r#"{"name":"Identity","type":"string","jsonPath":".status.identity"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.aws) || has(self.gcp) || has(self.azure) || has(self.oidc)")
        .message("set one cloud block: aws, gcp, azure or oidc, matching the cloud of the FederatedTrust in trustRef"),
    validation = Rule::new("(has(self.aws) ? 1 : 0) + (has(self.gcp) ? 1 : 0) + (has(self.azure) ? 1 : 0) + (has(self.oidc) ? 1 : 0) <= 1")
        .message("set only one of aws, gcp, azure or oidc: an AccessPolicy grants one cloud identity; create one AccessPolicy per identity")
)]
pub struct AccessPolicySpec {
    /// The FederatedTrust this policy uses. Its namespaceSelector must admit this namespace.
    pub trust_ref: TrustRef,

    /// Names of service accounts in this namespace that may use the identity.
    #[schemars(length(max = 64), inner(length(max = 253)))]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("self.size() > 0")
            .message("serviceAccounts needs at least one service account name"),
        validation = Rule::new("self.all(sa, sa.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'))")
            .message("serviceAccounts entries are names of service accounts in this namespace (lowercase letters, digits, '-' and '.'), not system:serviceaccount:... subjects")
    )]
    pub service_accounts: Vec<String>,

    /// Act as an AWS IAM role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsAccess>,

    /// Act as a Google service account, or as the federated principal itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpAccess>,

    /// Act as an Azure user-assigned managed identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureAccess>,

    /// Get a token for another relying party (Vault, a SaaS, an in-house API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcAccess>,

    /// The projected service-account token pods get for this policy.
    #[serde(default)]
    pub token: TokenSpec,

    /// Checks made when a pod is admitted, on top of the service account ("MFA for
    /// machines"). A pod that fails them gets no credentials (`enforcement: Skip`) or is
    /// refused (`enforcement: Reject`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<AccessConditions>,

    /// What happens to a pod that fails `conditions`: `Skip` admits it without this policy's
    /// credentials and records a Warning event; `Reject` refuses the pod.
    #[serde(default)]
    pub enforcement: Enforcement,

    /// Prove the federation with a real token exchange: the operator requests a token for the
    /// first service account (TokenRequest, the policy's audience, 10 minutes), exchanges it with
    /// the cloud as its pods would, discards the result, and reports `Verified`. Off by default:
    /// it needs the operator to hold `create` on `serviceaccounts/token` (docs/operations.md).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verify: bool,
}

/// A reference to a FederatedTrust.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrustRef {
    /// Name of the FederatedTrust (cluster-scoped).
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')")
        .message("trustRef.name must be the name of a FederatedTrust (lowercase letters, digits, '-' and '.')"))]
    pub name: String,
}

/// The AWS identity.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.roleName) && has(self.roleArn))")
        .message("set roleName (Passport creates and owns the role) or roleArn (adopt an existing role), not both"),
    validation = Rule::new("!has(self.roleArn) || ((!has(self.managedPolicyArns) || size(self.managedPolicyArns) == 0) && !has(self.inlinePolicy) && !has(self.maxSessionDuration))")
        .message("managedPolicyArns, inlinePolicy and maxSessionDuration apply only to roles Passport creates: remove them, or use roleName instead of roleArn")
)]
pub struct AwsAccess {
    /// Name of the role Passport creates and owns, under the trust's `rolePath`. When neither
    /// `roleName` nor `roleArn` is set, Passport names the role
    /// `<cluster>-<namespace>-<policy>`, shortened with a hash suffix to 64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9+=,.@_-]{1,64}$')")
        .message("roleName must be 1-64 letters, digits or + = , . @ _ - (IAM role name rules)"))]
    pub role_name: Option<String>,

    /// ARN of an existing role to adopt; it must match the trust's `allowedRoleArns`. Passport
    /// then owns only its own statements (Sid prefix `Passport`) in the role's trust policy and
    /// keeps every other statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:role/.+$')")
        .message("roleArn must be an IAM role ARN, e.g. arn:aws:iam::123456789012:role/my-app"))]
    pub role_arn: Option<String>,

    /// Managed policies attached to the role Passport creates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(length(max = 2048)))]
    #[x_kube(validation = Rule::new("self.all(a, a.startsWith('arn:'))")
        .message("managedPolicyArns entries must be policy ARNs, e.g. arn:aws:iam::aws:policy/ReadOnlyAccess"))]
    pub managed_policy_arns: Vec<String>,

    /// An inline permissions policy (IAM JSON) for the role Passport creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10240))]
    pub inline_policy: Option<String>,

    /// Maximum session duration of the role Passport creates, in seconds (3600-43200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 3600 && self <= 43200")
        .message("maxSessionDuration must be between 3600 (1 hour) and 43200 (12 hours) seconds"))]
    pub max_session_duration: Option<i32>,

    /// Region written into pods as `AWS_REGION` and `AWS_DEFAULT_REGION`, e.g. `eu-west-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z]{2}(-[a-z]+)+-[0-9]+$')")
        .message("region must be an AWS region name such as eu-west-1 or us-gov-west-1"))]
    pub region: Option<String>,

    /// Whether pods use the regional STS endpoint (`AWS_STS_REGIONAL_ENDPOINTS=regional`).
    #[serde(default = "default_true")]
    pub sts_regional_endpoints: bool,
}

fn default_true() -> bool {
    true
}

/// The Google identity.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.serviceAccount) != (has(self.direct) && self.direct)")
        .message("set exactly one of serviceAccount (impersonate a Google service account) or direct: true (grant roles to the federated principal itself)")
)]
pub struct GcpAccess {
    /// Email of the Google service account to impersonate; Passport grants
    /// `roles/iam.workloadIdentityUser` on it to each service account's principal. It must
    /// match the trust's `allowedServiceAccounts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 320))]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z0-9._%+-]+@[a-z0-9.-]+[.]gserviceaccount[.]com$')")
        .message("serviceAccount must be a Google service account email, e.g. app@my-project.iam.gserviceaccount.com"))]
    pub service_account: Option<String>,

    /// Use the federated principal directly, without impersonation; the status shows the
    /// `principal://` identifier to grant roles to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<bool>,
}

/// The Azure identity.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AzureAccess {
    /// Resource ID of the user-assigned managed identity; Passport adds a federated identity
    /// credential to it per service account. It must match the trust's `allowedIdentities`.
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.matches('(?i)^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft[.]managedidentity/userassignedidentities/[^/]+$')")
        .message("identity must be a user-assigned managed identity resource ID: /subscriptions/<subscription>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>"))]
    pub identity: String,

    /// The identity's client ID (a GUID). Read from the identity when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 36))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')")
        .message("clientId must be the identity's client ID, a GUID"))]
    pub client_id: Option<String>,
}

/// A token for another relying party.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OidcAccess {
    /// The audience of the token; it must match the trust's `allowedAudiences`. Pods find the
    /// token at `/var/run/secrets/passport.dev/oidc/<policy>/token`.
    #[schemars(length(min = 1, max = 256))]
    pub audience: String,
}

/// The projected service-account token.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TokenSpec {
    /// Token lifetime in seconds; the kubelet refreshes it at 80% of that.
    #[serde(default = "default_expiration")]
    #[x_kube(
        validation = Rule::new("self >= 600")
            .message("token.expirationSeconds must be at least 600 (10 minutes): kube-apiserver issues no shorter token"),
        validation = Rule::new("self <= 86400")
            .message("token.expirationSeconds must be at most 86400 (24 hours)")
    )]
    pub expiration_seconds: i64,

    /// Overrides the token audience (default: the cloud's: `sts.amazonaws.com`, the GCP
    /// provider's audience, `api://AzureADTokenExchange`, or `oidc.audience`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub audience: Option<String>,
}

impl Default for TokenSpec {
    fn default() -> Self {
        Self {
            expiration_seconds: default_expiration(),
            audience: None,
        }
    }
}

fn default_expiration() -> i64 {
    3600
}

/// Conditions checked at admission.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessConditions {
    /// Every container image must come from an allowed registry prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<ImageConditions>,

    /// Labels the pod must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,

    /// Time windows in which pods may get credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
}

/// Image checks.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageConditions {
    /// Allowed image reference prefixes, e.g. `registry.example.com/payments/`. Empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 512)))]
    #[x_kube(validation = Rule::new("self.all(p, !p.contains('://'))")
        .message("allowedPrefixes are image reference prefixes such as registry.example.com/team/, without a scheme like https://"))]
    pub allowed_prefixes: Vec<String>,

    /// Require images pinned by digest (`@sha256:...`).
    #[serde(default)]
    pub require_digest: bool,
}

/// Time windows.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// IANA time zone the windows are in, e.g. `Europe/Berlin`.
    #[serde(default = "default_time_zone")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z]+(/[A-Za-z0-9_+-]+)*$')")
        .message("timeZone must be an IANA time zone name such as UTC or Europe/Berlin"))]
    pub time_zone: String,

    /// The windows; a pod is admitted with credentials when the time falls in any of them.
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.size() > 0")
        .message("schedule.windows needs at least one window"))]
    pub windows: Vec<TimeWindow>,
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}

/// One recurring time window.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.start.matches('^([01][0-9]|2[0-3]):[0-5][0-9]$') && self.end.matches('^([01][0-9]|2[0-3]):[0-5][0-9]$')")
        .message("start and end are 24-hour HH:MM times, e.g. 08:00 and 18:30"),
    validation = Rule::new("self.start != self.end")
        .message("start and end must differ; a window whose end is before its start runs past midnight")
)]
pub struct TimeWindow {
    /// Days the window starts on. Empty: every day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7))]
    pub days: Vec<Weekday>,
    /// Start time, `HH:MM`, 24-hour.
    #[schemars(length(max = 5))]
    pub start: String,
    /// End time, `HH:MM`, 24-hour; before `start` means the window ends the next day.
    #[schemars(length(max = 5))]
    pub end: String,
}

/// A day of the week.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// What to do with a pod that fails the conditions.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Enforcement {
    /// Admit the pod without this policy's credentials; Warning event and audit record.
    #[default]
    Skip,
    /// Refuse the pod.
    Reject,
}

/// Observed state of an AccessPolicy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicyStatus {
    /// `Ready`, `CloudSynced` and `Verified`, kstatus-style.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The cloud: `aws`, `gcp`, `azure` or `oidc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
    /// The cloud identity, for display: role ARN, service account email or principal, managed
    /// identity name, or audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Service accounts the cloud now trusts for this policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bound_service_accounts: Vec<String>,
    /// AWS outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsAccessStatus>,
    /// GCP outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpAccessStatus>,
    /// Azure outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureAccessStatus>,
    /// When the cloud side was last confirmed to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Pods of the listed service accounts that started before this policy (or before its
    /// namespace was enabled) and so lack its credentials: the webhook acts only when a pod is
    /// created. Restart them (`kubectl rollout restart deployment/<name>`); a Warning Event
    /// names their owners. Counted at each full sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods_without_credentials: Option<i32>,
}

/// AWS outputs of a policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AwsAccessStatus {
    /// ARN of the role pods assume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

/// GCP outputs of a policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GcpAccessStatus {
    /// The federated principal(s), one per service account, to grant roles to with
    /// `direct: true`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
}

/// Azure outputs of a policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AzureAccessStatus {
    /// Names of the federated identity credentials Passport manages on the identity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub federated_credentials: Vec<String>,
    /// The identity's client ID in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl AccessPolicySpec {
    /// The cloud this policy grants access to.
    pub fn cloud(&self) -> Option<crate::Cloud> {
        crate::Cloud::only_one(
            self.aws.is_some(),
            self.gcp.is_some(),
            self.azure.is_some(),
            self.oidc.is_some(),
        )
    }
}
