//! Tests of the local stack itself: the Kubernetes API emulator and the cloud emulators, and of
//! the CRDs as the API server sees them. One test binary keeps link time and disk use down.

// The whole crate is test code: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod apiserver;
mod aws;
mod azure;
mod binary;
mod crds;
mod gcp;
mod install;
mod kubectl;
mod passport_api;
mod real_only;
mod storage;
