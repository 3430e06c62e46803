//! Passport's pod mutation: `mutate` decides, from a pod and plain-data `Bindings`, which cloud
//! credentials the pod gets (or why not, in a decision trace), and `review` wraps it in
//! AdmissionReview JSON. Both are pure; the HTTPS server and the lookups live elsewhere.

pub mod bindings;
mod compat;
pub mod conditions;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod grants;
mod inject;
pub mod memo;
pub mod mutate;
pub mod patch;
mod pod_in;
pub mod review;
pub mod trace;

pub use bindings::{Bindings, EnvSources, PolicyBinding};
pub use config::{CompatConfig, Config};
pub use memo::Memo;
pub use mutate::{Denial, Mutation, SkippedPolicy, mutate, mutate_owned, service_account};
pub use review::{
    Admission, BindingsSource, Decision, Request, Response, ReviewError, Reviewed, review,
};
pub use trace::{Outcome, Step, StepKind, Trace};
