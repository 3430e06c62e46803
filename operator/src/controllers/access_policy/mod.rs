//! The AccessPolicy controller: `desired` (pure), `sync` (the cloud side), `status` (pure) and
//! `reconcile` (the Kubernetes side).

pub mod desired;
pub mod predating;
pub mod reconcile;
pub mod status;
pub mod sync;
