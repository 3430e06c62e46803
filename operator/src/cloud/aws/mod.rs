//! AWS IAM: OIDC providers and roles through aws-sdk-iam.
