//! `/metrics`: reconciles by kind and outcome, their durations, errors by reason, and every
//! cloud call by cloud, operation, read/write and outcome (from [`Calls`]), in the OpenMetrics
//! text format (prometheus-client).

use std::time::Duration;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::cloud::Calls;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemoLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub reason: &'static str,
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    durations: Family<KindLabels, Histogram>,
    errors: Family<ErrorLabels, Counter>,
    admissions: Family<DecisionLabels, Histogram>,
    memo: Family<MemoLabels, Counter>,
}

impl Metrics {
    pub fn new(calls: Calls) -> Self {
        let mut registry = Registry::with_prefix("passport");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by kind and outcome (applied, deleted, refused, failed)",
            reconciles.clone(),
        );
        let durations = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile, cloud calls included",
            durations.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that ended in an error or a refusal, by condition reason",
            errors.clone(),
        );
        let admissions = Family::<DecisionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        registry.register(
            "webhook_admission_duration_seconds",
            "Admission requests by decision (injected, untouched, denied, ignored, invalid) and \
             the time to answer them, lookups included",
            admissions.clone(),
        );
        let memo = Family::<MemoLabels, Counter>::default();
        registry.register(
            "webhook_memo_lookups",
            "Pod admissions looked up in the webhook's memo of recent decisions: hit (answered \
             again), stale (the bindings changed: decided again) or miss",
            memo.clone(),
        );
        registry.register_collector(Box::new(CallsCollector(calls)));
        registry.register_collector(Box::new(AuditCollector));
        Self {
            registry,
            reconciles,
            durations,
            errors,
            admissions,
            memo,
        }
    }

    /// Records one reconcile.
    pub fn reconciled(&self, kind: &'static str, outcome: &'static str, took: Duration) {
        self.reconciles
            .get_or_create(&ReconcileLabels { kind, outcome })
            .inc();
        self.durations
            .get_or_create(&KindLabels { kind })
            .observe(took.as_secs_f64());
    }

    /// Records an error or refusal reason.
    pub fn error(&self, kind: &'static str, reason: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { kind, reason })
            .inc();
    }

    /// Records one admission request.
    pub fn admission(&self, decision: &'static str, took: Duration) {
        self.admissions
            .get_or_create(&DecisionLabels { decision })
            .observe(took.as_secs_f64());
    }

    /// Records one lookup in the webhook's memo.
    pub fn memo(&self, result: &'static str) {
        self.memo.get_or_create(&MemoLabels { result }).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(%error, "encoding the metrics failed");
        }
        out
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    cloud: &'static str,
    operation: &'static str,
    access: &'static str,
    outcome: &'static str,
}

/// Exports the providers' call counters at scrape time.
#[derive(Debug)]
struct CallsCollector(Calls);

impl Collector for CallsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snapshot = self.0.snapshot();
        let sample = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "cloud_calls",
            "Cloud API calls by cloud, operation, read/write and outcome (every retry counts)",
            None,
            sample.metric_type(),
        )?;
        for (key, count) in snapshot {
            let labels = CallLabels {
                cloud: key.cloud,
                operation: key.operation,
                access: key.access.as_str(),
                outcome: key.outcome.as_str(),
            };
            ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Exports the audit lines dropped because standard output was not read fast enough.
#[derive(Debug)]
struct AuditCollector;

impl Collector for AuditCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let dropped = ConstCounter::new(crate::audit::dropped());
        let metric = encoder.encode_descriptor(
            "audit_lines_dropped",
            "Audit lines dropped because standard output was not read fast enough (more than \
             8 MiB of lines were waiting to be written)",
            None,
            dropped.metric_type(),
        )?;
        dropped.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use passport_crds::Cloud;

    use super::*;
    use crate::cloud::{Access, calls::Outcome};

    #[test]
    fn reconciles_and_cloud_calls_are_exported() {
        let calls = Calls::default();
        let metrics = Metrics::new(calls.clone());
        calls.record(Cloud::Aws, "CreateRole", Access::Write, Outcome::Ok);
        calls.record(Cloud::Aws, "CreateRole", Access::Write, Outcome::Ok);
        metrics.reconciled("AccessPolicy", "applied", Duration::from_millis(20));
        metrics.error("AccessPolicy", "NotOwned");
        let text = metrics.encode();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.contains(&"# TYPE passport_cloud_calls counter"),
            "{text}"
        );
        assert!(
            lines.contains(
                &r#"passport_cloud_calls_total{cloud="aws",operation="CreateRole",access="write",outcome="ok"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"passport_reconciles_total{kind="AccessPolicy",outcome="applied"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"passport_reconcile_errors_total{kind="AccessPolicy",reason="NotOwned"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("passport_reconcile_duration_seconds_bucket"),
            "{text}"
        );
        assert!(
            lines.contains(&"passport_audit_lines_dropped_total 0"),
            "{text}"
        );
    }
}
