//! Passport's local stack: a Kubernetes API emulator and cloud emulators that the e2e tests, the
//! demo and the benchmarks run against, because no real API server or cloud is reachable here.
//! `FIDELITY.md` lists where the stack differs from the real systems.

pub mod apiserver;
pub mod aws;
pub mod azure;
pub mod cluster;
pub mod faults;
pub mod gcp;
pub mod kubelet;
pub mod oidc;
pub mod realapi;
pub mod schema;
pub mod serve;
pub mod stack;
pub mod tls;
pub mod watched;
