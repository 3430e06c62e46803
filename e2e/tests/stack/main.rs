//! Tests of the local stack itself: the Kubernetes API emulator and the cloud emulators.
//! One test binary for all of them keeps link time and disk use down.

// The whole crate is test code: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod crds;
