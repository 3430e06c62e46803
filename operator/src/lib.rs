//! Passport's operator: the cloud providers (and, next, the controllers, metrics and audit)
//! behind the `passport` binary.

pub mod cloud;
pub mod controllers;
pub mod manifests;
pub mod offline;
pub mod plan;
