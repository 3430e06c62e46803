//! Label, annotation and finalizer keys shared by the controllers and the webhook.

/// API group of Passport's custom resources.
pub const GROUP: &str = "passport.dev";
/// API version of Passport's custom resources.
pub const VERSION: &str = "v1alpha1";

/// Finalizer that holds a resource until its cloud objects are cleaned up.
pub const FINALIZER: &str = "passport.dev/cleanup";
/// Field manager for server-side apply and status patches.
pub const FIELD_MANAGER: &str = "passport";

/// Pod annotation: `"false"` opts the pod out of injection.
pub const INJECT: &str = "passport.dev/inject";
/// Pod annotation written by the webhook: the policies applied, comma-separated `namespace/name`.
pub const INJECTED: &str = "passport.dev/injected";
/// Pod annotation: comma-separated container names that get no credentials.
pub const SKIP_CONTAINERS: &str = "passport.dev/skip-containers";
/// Namespace label set by the operator on namespaces that use Passport; the webhook's
/// namespaceSelector matches it, so an outage never blocks other namespaces.
pub const NAMESPACE_ENABLED: &str = "passport.dev/enabled";
/// Namespace annotation the operator sets beside [`NAMESPACE_ENABLED`] when it added the label
/// itself. It removes the label with the namespace's last AccessPolicy only then, so a label
/// set by hand (for a namespace that uses only the EKS or Azure annotations) stays.
pub const NAMESPACE_ENABLED_BY: &str = "passport.dev/enabled-by";
/// Label on Passport's own pods; the webhook's objectSelector excludes them.
pub const COMPONENT: &str = "app.kubernetes.io/part-of";

/// Ownership tags (AWS tags, GCP description, Azure FIC name prefix) on every cloud object
/// Passport creates, so two clusters sharing an account never fight.
pub mod owner {
    pub const CLUSTER: &str = "passport.dev/cluster";
    pub const KIND: &str = "passport.dev/kind";
    pub const NAMESPACE: &str = "passport.dev/namespace";
    pub const NAME: &str = "passport.dev/name";
}

/// Annotations of the AWS EKS pod identity webhook, honoured for drop-in migration.
pub mod eks {
    pub const ROLE_ARN: &str = "eks.amazonaws.com/role-arn";
    pub const AUDIENCE: &str = "eks.amazonaws.com/audience";
    pub const TOKEN_EXPIRATION: &str = "eks.amazonaws.com/token-expiration";
    pub const STS_REGIONAL_ENDPOINTS: &str = "eks.amazonaws.com/sts-regional-endpoints";
    pub const SKIP_CONTAINERS: &str = "eks.amazonaws.com/skip-containers";
}

/// Labels and annotations of Azure workload identity, honoured for drop-in migration.
pub mod azure_wi {
    pub const USE: &str = "azure.workload.identity/use";
    pub const CLIENT_ID: &str = "azure.workload.identity/client-id";
    pub const TENANT_ID: &str = "azure.workload.identity/tenant-id";
    pub const TOKEN_EXPIRATION: &str = "azure.workload.identity/service-account-token-expiration";
    pub const SKIP_CONTAINERS: &str = "azure.workload.identity/skip-containers";
}
