//! The FederatedTrust controller: `desired` and `status` (pure) and `reconcile`.

pub mod desired;
pub mod reconcile;
pub mod status;
