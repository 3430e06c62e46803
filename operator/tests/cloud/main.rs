//! The cloud providers with the real SDKs against the local stack's emulators: moto behind the
//! IAM front (AWS), the GCP fake, the Azure fake. One test binary keeps link time down.

// The whole crate is test code: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod aws;
mod azure;
mod gcp;
