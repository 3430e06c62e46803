//! The decision trace: every step of a mutation decision in plain words. `passport mutate
//! --explain` prints it and the audit line carries it, so it is one serialisable structure.

use serde::Serialize;

/// What a step is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StepKind {
    /// The pod's own switches (`passport.dev/inject`, skip lists).
    Pod,
    /// Which policies name the service account.
    Policy,
    /// Whether the policy's trust exists, matches its cloud and admits the namespace.
    Trust,
    /// One admission condition of a policy.
    Condition,
    /// The EKS or Azure compatibility annotations.
    Compat,
    /// What was injected, where, and what was left alone.
    Inject,
    /// The outcome for one policy or for the pod.
    Decision,
}

/// The result of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Pass,
    Fail,
    Info,
}

/// One step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub kind: StepKind,
    /// `namespace/name` of the policy the step is about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    pub outcome: Outcome,
    pub message: String,
}

/// The steps, in the order they were taken.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Trace {
    pub steps: Vec<Step>,
}

impl Trace {
    pub(crate) fn push(
        &mut self,
        kind: StepKind,
        policy: Option<&str>,
        outcome: Outcome,
        message: impl Into<String>,
    ) {
        self.steps.push(Step {
            kind,
            policy: policy.map(str::to_owned),
            outcome,
            message: message.into(),
        });
    }
}

impl std::fmt::Display for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for step in &self.steps {
            let mark = match step.outcome {
                Outcome::Pass => "ok  ",
                Outcome::Fail => "FAIL",
                Outcome::Info => "    ",
            };
            match &step.policy {
                Some(policy) => writeln!(f, "{mark} {policy}: {}", step.message)?,
                None => writeln!(f, "{mark} {}", step.message)?,
            }
        }
        Ok(())
    }
}
