//! The FederatedTrust controller.

pub mod desired;
