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

    /// The steps in plain words, one line each: what `passport mutate --explain` prints and
    /// the audit line carries. Built with plain appends: on the request path, the formatting
    /// machinery costs several times as much.
    pub fn text(&self) -> String {
        let len: usize = self
            .steps
            .iter()
            .map(|s| 6 + s.policy.as_ref().map_or(0, |p| p.len() + 2) + s.message.len())
            .sum();
        let mut out = String::with_capacity(len);
        for step in &self.steps {
            out.push_str(match step.outcome {
                Outcome::Pass => "ok   ",
                Outcome::Fail => "FAIL ",
                Outcome::Info => "     ",
            });
            if let Some(policy) = &step.policy {
                out.push_str(policy);
                out.push_str(": ");
            }
            out.push_str(&step.message);
            out.push('\n');
        }
        out
    }
}

impl std::fmt::Display for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::{Outcome, StepKind, Trace};

    #[test]
    fn the_text_has_one_marked_line_per_step() {
        let mut trace = Trace::default();
        trace.push(
            StepKind::Policy,
            Some("shop/api"),
            Outcome::Pass,
            "names service account api",
        );
        trace.push(
            StepKind::Condition,
            Some("shop/api"),
            Outcome::Fail,
            "images: \"x\"",
        );
        trace.push(StepKind::Decision, None, Outcome::Info, "nothing injected");
        let text = "ok   shop/api: names service account api\nFAIL shop/api: images: \"x\"\n     nothing injected\n";
        assert_eq!(trace.text(), text);
        assert_eq!(trace.to_string(), text);
        assert_eq!(Trace::default().text(), "");
    }
}
