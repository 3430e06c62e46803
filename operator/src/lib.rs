//! Passport's operator: the cloud providers, the controllers, metrics and audit behind the
//! `passport` binary.

pub mod audit;
pub mod cloud;
pub mod controllers;
#[doc(hidden)]
pub mod fuzzing;
pub mod leader;
pub mod manifests;
pub mod metrics;
pub mod offline;
pub mod plan;
pub mod run;
pub mod webhook;
