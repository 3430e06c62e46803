//! Google Cloud: workload identity pools and providers (REST), service-account IAM policies.
