//! `passport run` as a process against the local stack: trusts and policies of every cloud
//! reach Ready and Verified with the exact cloud documents read back through the clouds' own
//! APIs; edits, deletions and guardrails; resilience (a killed operator, injected faults, drift,
//! a steady state that writes nothing). One stack and one operator serve the whole binary; each
//! test has namespaces and trusts of its own. `PASSPORT_E2E_APISERVER=real` runs it on the real
//! kube-apiserver.

// The whole crate is test code: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod aws;
mod azure;
mod drills;
mod gcp;
mod harness;
mod issuer;
mod real_only;
mod resilience;
mod sdks;
mod webhook;
