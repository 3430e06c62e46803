//! The FederatedTrust controller: `desired` and `status` (pure) and `reconcile`.

pub mod desired;
pub mod publish;
pub mod reconcile;
pub mod status;
