//! Tests of the local stack itself: the Kubernetes API emulator and the cloud emulators.
//! One test binary for all of them keeps link time and disk use down.

mod azure;
