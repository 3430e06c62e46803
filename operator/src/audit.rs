//! The audit log: one JSON line for every cloud change, saying who (policy, trust), what
//! (cloud, object, operation), the digest of what was written, and how it ended; and one for
//! every admission that involved an AccessPolicy, with its decision trace. `passport run`
//! writes these lines to standard output, apart from the logs (standard error).
//!
//! An admission must not wait on the reader of standard output (a log collector that falls
//! behind fills the pipe, and a write to a full pipe blocks): a line is appended to the pending
//! lines in memory, and a writer thread of its own writes them, in batches gathered for
//! [`GATHER`] after the first line of each, in one write. Should the pending lines pass
//! [`MAX_PENDING`] bytes, further lines are dropped and counted
//! (`passport_audit_lines_dropped_total`, and an error logged), as kube-apiserver's batch audit
//! backend drops events when its buffer is full. `passport run` writes what is pending before
//! it exits.
//!
//! The lines have the shape of a JSON log line (`timestamp`, `level`, `message`, the fields,
//! `target`), so a log pipeline reads them like any other; they are written here with
//! serde_json rather than through tracing's JSON formatter, which copies every field into a
//! string and a map before it writes the line: on the webhook's path that was a tenth of an
//! admission's time.

use std::fmt::Display;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use passport_crds::Cloud;
use passport_webhook::Trace;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// The `target` of audit lines.
pub const TARGET: &str = "audit";

/// Whether audit lines are written: `passport run` turns them on; tests and the offline
/// commands write none.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// How long the lines of a batch gather after its first one before they are written: the
/// most a line waits in memory while standard output is read.
pub const GATHER: Duration = Duration::from_millis(20);

/// The most bytes of lines waiting to be written; past it, lines are dropped and counted.
pub const MAX_PENDING: usize = 8 << 20;

/// The lines waiting for the writer thread.
static PENDING: Batches = Batches::new(MAX_PENDING);

/// Held while lines are taken and written, so that batches reach standard output in order.
static WRITING: Mutex<()> = Mutex::new(());

/// Writes audit lines to standard output from now on (`passport run`), from a thread of their
/// own.
pub fn to_stdout() {
    static WRITER: std::sync::Once = std::sync::Once::new();
    WRITER.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("audit".to_owned())
            .spawn(|| {
                let mut batch = Vec::new();
                let mut dropped = 0;
                loop {
                    PENDING.wait(GATHER);
                    write_pending(&mut batch);
                    let now = PENDING.dropped();
                    if now > dropped {
                        tracing::error!(
                            lines = now - dropped,
                            "audit lines were dropped: standard output was not read fast enough"
                        );
                        dropped = now;
                    }
                }
            });
        match spawned {
            Ok(_) => ENABLED.store(true, Ordering::Relaxed),
            Err(error) => tracing::error!(%error, "could not start the audit writer"),
        }
    });
}

/// Writes the pending lines now (`passport run`, as it exits).
pub fn flush() {
    write_pending(&mut Vec::new());
}

/// How many lines were dropped since the process started, the pending lines being full.
pub fn dropped() -> u64 {
    PENDING.dropped()
}

/// Takes the pending lines into `batch` and writes them to standard output in one write.
fn write_pending(batch: &mut Vec<u8>) {
    let _writing = lock(&WRITING);
    PENDING.take(batch);
    if batch.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(error) = out.write_all(batch).and_then(|()| out.flush()) {
        tracing::error!(%error, "could not write audit lines");
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A thread that panicked holding it left whole lines: the bytes are still good.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lines waiting to be written, at most `limit` bytes of them.
struct Batches {
    pending: Mutex<Vec<u8>>,
    /// Told when a line arrives while none was pending.
    arrived: Condvar,
    dropped: AtomicU64,
    limit: usize,
}

impl Batches {
    const fn new(limit: usize) -> Self {
        Self {
            pending: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            dropped: AtomicU64::new(0),
            limit,
        }
    }

    /// Appends one line, or drops and counts it when the pending lines are full. Only the first
    /// line of a batch wakes the writer.
    fn push(&self, line: &[u8]) {
        let mut pending = lock(&self.pending);
        if pending.len() + line.len() > self.limit {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let first = pending.is_empty();
        pending.extend_from_slice(line);
        drop(pending);
        if first {
            self.arrived.notify_one();
        }
    }

    /// Waits until a line is pending, then for `gather` more.
    fn wait(&self, gather: Duration) {
        let pending = lock(&self.pending);
        drop(
            self.arrived
                .wait_while(pending, |p| p.is_empty())
                .unwrap_or_else(|e| e.into_inner()),
        );
        std::thread::sleep(gather);
    }

    /// Takes every pending line into `batch`, leaving `batch`'s buffer for the next ones.
    fn take(&self, batch: &mut Vec<u8>) {
        batch.clear();
        std::mem::swap(&mut *lock(&self.pending), batch);
    }

    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// `line` as one JSON object and its newline.
fn render(line: &impl Serialize) -> serde_json::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(1024);
    serde_json::to_writer(&mut bytes, line)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Hands one line, whole, to the writer thread.
fn write(line: &impl Serialize) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    match render(line) {
        Ok(bytes) => PENDING.push(&bytes),
        Err(error) => tracing::error!(%error, "could not write an audit line"),
    }
}

/// A value written as its `Display` text, straight into the line (escaped on the way, never
/// first rendered to a string of its own).
struct Text<T>(T);

impl<T: Display> Serialize for Text<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// Items joined with a separator.
struct Joined<'a, T>(&'a [T], &'static str);

impl<T: Display> Display for Joined<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(self.1)?;
            }
            item.fmt(f)?;
        }
        Ok(())
    }
}

/// The time of a line: UTC, to the microsecond.
struct Now(jiff::Timestamp);

impl Display for Now {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.6}", self.0)
    }
}

/// One cloud change, or one refusal to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub cloud: Cloud,
    /// The cloud object: an ARN, an email, a resource name.
    pub object: String,
    /// `create`, `update`, `delete`, or `keep` (not Passport's to change).
    pub operation: &'static str,
    /// What changed, in words.
    pub changes: Vec<String>,
    /// sha256 (first 16 hex digits) of the desired document written, `-` for deletions.
    pub digest: String,
    /// `ok`, `kept` or the error.
    pub outcome: String,
}

impl Record {
    pub fn change(
        cloud: Cloud,
        object: &str,
        operation: &'static str,
        changes: Vec<String>,
        after: &impl serde::Serialize,
    ) -> Self {
        Self {
            cloud,
            object: object.to_owned(),
            operation,
            changes,
            digest: if operation == "delete" {
                "-".to_owned()
            } else {
                digest(after)
            },
            outcome: "ok".to_owned(),
        }
    }

    pub fn kept(cloud: Cloud, object: &str, why: &str) -> Self {
        Self {
            cloud,
            object: object.to_owned(),
            operation: "keep",
            changes: vec![why.to_owned()],
            digest: "-".to_owned(),
            outcome: "kept".to_owned(),
        }
    }

    /// The record of an ensure: None when it changed nothing.
    pub fn ensured<T>(
        cloud: Cloud,
        object: &str,
        ensured: &crate::cloud::Ensured<T>,
        after: &impl serde::Serialize,
    ) -> Option<Self> {
        let operation = match ensured.change {
            crate::cloud::Change::Unchanged => return None,
            crate::cloud::Change::Created => "create",
            crate::cloud::Change::Updated => "update",
        };
        Some(Self::change(
            cloud,
            object,
            operation,
            ensured.changes.clone(),
            after,
        ))
    }

    /// The record of a delete: None when there was nothing to delete.
    pub fn deleted(cloud: Cloud, object: &str, deleted: &crate::cloud::Deleted) -> Option<Self> {
        match deleted {
            crate::cloud::Deleted::Deleted => {
                Some(Self::change(cloud, object, "delete", Vec::new(), &()))
            }
            crate::cloud::Deleted::Kept { why } => Some(Self::kept(cloud, object, why)),
            crate::cloud::Deleted::Absent => None,
        }
    }

    /// A failed change: the cloud and operation of the error.
    pub fn failed(error: &crate::cloud::CloudError, object: &str) -> Self {
        Self {
            cloud: error.cloud,
            object: object.to_owned(),
            operation: error.operation,
            changes: Vec::new(),
            digest: "-".to_owned(),
            outcome: format!("error: {}", error.message),
        }
    }

    /// The Event note for this change.
    pub fn note(&self) -> String {
        let mut note = format!("{} {} {}", self.operation, self.cloud, self.object);
        if !self.changes.is_empty() {
            note.push_str(": ");
            note.push_str(&self.changes.join("; "));
        }
        note
    }
}

/// Who asked for a change.
#[derive(Clone, Debug)]
pub struct Who<'a> {
    /// `FederatedTrust` or `AccessPolicy`.
    pub kind: &'static str,
    /// `namespace/name` for policies, the name for trusts.
    pub resource: &'a str,
    pub trust: &'a str,
    /// Set when a periodic resync found the cloud changed behind Passport's back.
    pub drift: bool,
}

/// An audit line: the frame of a JSON log line around `fields`, which follow `kind`.
#[derive(Serialize)]
struct Line<'a, F> {
    timestamp: Text<Now>,
    level: &'static str,
    message: &'static str,
    kind: &'a str,
    #[serde(flatten)]
    fields: F,
    target: &'static str,
}

fn line<'a, F>(message: &'static str, kind: &'a str, fields: F) -> Line<'a, F> {
    Line {
        timestamp: Text(Now(jiff::Timestamp::now())),
        level: "INFO",
        message,
        kind,
        fields,
        target: TARGET,
    }
}

/// The fields of a cloud change (docs/operations.md, "Logs and the audit log").
#[derive(Serialize)]
struct CloudChange<'a> {
    resource: &'a str,
    trust: &'a str,
    cloud: &'static str,
    object: &'a str,
    operation: &'static str,
    changes: Text<Joined<'a, String>>,
    digest: &'a str,
    drift: bool,
    outcome: &'a str,
}

fn cloud_change<'a>(who: &Who<'a>, record: &'a Record) -> Line<'a, CloudChange<'a>> {
    line(
        "cloud change",
        who.kind,
        CloudChange {
            resource: who.resource,
            trust: who.trust,
            cloud: record.cloud.as_str(),
            object: &record.object,
            operation: record.operation,
            changes: Text(Joined(&record.changes, "; ")),
            digest: &record.digest,
            drift: who.drift,
            outcome: &record.outcome,
        },
    )
}

/// Writes the audit line of one record: with `passport run`, a JSON object on standard output.
pub fn emit(who: &Who<'_>, record: &Record) {
    write(&cloud_change(who, record));
}

/// One admission decision that involved a policy: the fields of its audit line
/// (docs/operations.md, "Audit lines for admissions").
#[derive(Serialize)]
pub struct Admission<'a> {
    /// The AdmissionReview request's UID.
    pub correlation_id: &'a str,
    pub namespace: &'a str,
    /// The pod's name, or `<generateName>*`.
    pub pod: &'a str,
    pub service_account: &'a str,
    /// `admitted` or `denied`.
    pub decision: &'static str,
    #[serde(serialize_with = "comma_separated")]
    pub applied: &'a [String],
    /// Admitted: the policies skipped by their conditions; denied: those that refused the pod.
    #[serde(serialize_with = "comma_separated")]
    pub skipped: &'a [&'a str],
    /// The compatibility modes that gave credentials (`eks`, `azure`).
    #[serde(serialize_with = "comma_separated")]
    pub compat: &'a [String],
    /// As `passport mutate --explain` words it.
    pub trace: TraceText<'a>,
    pub dry_run: bool,
}

/// The trace of an admission line: the steps, worded as the line is written, or their words
/// already written as a JSON string (a decision of the webhook's memo, which answers many
/// requests with one trace).
#[derive(Clone, Copy)]
pub enum TraceText<'a> {
    Steps(&'a Trace),
    Json(&'a serde_json::value::RawValue),
}

impl Serialize for TraceText<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            TraceText::Steps(trace) => serializer.serialize_str(&trace.text()),
            TraceText::Json(text) => text.serialize(serializer),
        }
    }
}

fn comma_separated<S: serde::Serializer, T: Display>(
    items: &&[T],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&Joined(items, ","))
}

fn admission_line<'a>(admission: &'a Admission<'a>) -> Line<'a, &'a Admission<'a>> {
    line("admission", "Pod", admission)
}

/// Writes the audit line of one admission: with `passport run`, a JSON object on standard
/// output.
pub fn admission(admission: &Admission<'_>) {
    write(&admission_line(admission));
}

/// sha256 of a document's JSON, first 16 hex digits.
pub fn digest(document: &impl serde::Serialize) -> String {
    let bytes = serde_json::to_vec(document).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_lines_are_taken_whole_in_order_and_dropped_past_the_limit() {
        let batches = Batches::new(10);
        batches.push(b"one\n");
        batches.push(b"two\n");
        assert_eq!(batches.dropped(), 0);
        // 8 bytes pending: a 4-byte line would pass the limit.
        batches.push(b"six\n");
        assert_eq!(batches.dropped(), 1);
        let mut batch = b"old".to_vec();
        batches.take(&mut batch);
        assert_eq!(batch, b"one\ntwo\n");
        // Taken: there is room again, and the next batch holds only what came after.
        batches.push(b"ten\n");
        batches.take(&mut batch);
        assert_eq!(batch, b"ten\n");
        batches.take(&mut batch);
        assert!(batch.is_empty());
        assert_eq!(batches.dropped(), 1);
    }

    #[test]
    fn the_writer_wakes_for_the_first_line_of_a_batch() {
        static BATCHES: Batches = Batches::new(1 << 10);
        let writer = std::thread::spawn(|| {
            BATCHES.wait(Duration::from_millis(50));
            let mut batch = Vec::new();
            BATCHES.take(&mut batch);
            batch
        });
        std::thread::sleep(Duration::from_millis(20));
        BATCHES.push(b"first\n");
        // Within the gathering time after the first line: in the same batch.
        BATCHES.push(b"second\n");
        assert_eq!(writer.join().unwrap(), b"first\nsecond\n");
    }

    #[test]
    fn a_record_names_the_change_and_digests_what_was_written() {
        let record = Record::change(
            Cloud::Aws,
            "arn:aws:iam::1:role/x",
            "update",
            vec!["trust policy".to_owned()],
            &serde_json::json!({"a": 1}),
        );
        assert_eq!(record.digest.len(), 16);
        assert_eq!(record.digest, digest(&serde_json::json!({"a": 1})));
        assert_ne!(record.digest, digest(&serde_json::json!({"a": 2})));
        assert_eq!(
            record.note(),
            "update aws arn:aws:iam::1:role/x: trust policy"
        );
        let deleted = Record::change(Cloud::Gcp, "sa@p", "delete", Vec::new(), &());
        assert_eq!(deleted.digest, "-");
    }

    /// A rendered line, checked to be one line of JSON with the frame of a log line around
    /// `fields` (in this order): `timestamp` (UTC, to the microsecond, now), `level`,
    /// `message`, `kind`, then `fields`, then `target`.
    fn framed(bytes: &[u8], fields: &[&str]) -> serde_json::Value {
        let text = std::str::from_utf8(bytes).unwrap();
        assert!(
            text.ends_with('\n') && text.matches('\n').count() == 1,
            "{text}"
        );
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        // serde_json's map keeps keys sorted; the order is read from the text itself.
        let mut keys: Vec<(usize, &str)> = value
            .as_object()
            .unwrap()
            .keys()
            .map(|k| (text.find(&format!("\"{k}\":")).unwrap(), k.as_str()))
            .collect();
        keys.sort();
        let keys: Vec<&str> = keys.into_iter().map(|(_, k)| k).collect();
        let frame = ["timestamp", "level", "message", "kind"];
        assert_eq!(keys, [&frame[..], fields, &["target"]].concat());
        let timestamp = value["timestamp"].as_str().unwrap();
        let parsed: jiff::Timestamp = timestamp.parse().unwrap();
        assert!(
            (jiff::Timestamp::now() - parsed).get_seconds().abs() < 60,
            "{timestamp}"
        );
        assert!(
            timestamp.ends_with('Z') && timestamp.rsplit('.').next().unwrap().len() == 7,
            "UTC to the microsecond: {timestamp}"
        );
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["target"], "audit");
        value
    }

    #[test]
    fn a_cloud_change_line_has_the_documented_fields_in_order() {
        let record = Record::change(
            Cloud::Aws,
            "arn:aws:iam::1:role/x",
            "update",
            vec!["trust policy".to_owned(), "tags \"a\"".to_owned()],
            &serde_json::json!({"a": 1}),
        );
        let who = Who {
            kind: "AccessPolicy",
            resource: "payments/s3-reader",
            trust: "aws-prod",
            drift: true,
        };
        let value = framed(
            &render(&cloud_change(&who, &record)).unwrap(),
            &[
                "resource",
                "trust",
                "cloud",
                "object",
                "operation",
                "changes",
                "digest",
                "drift",
                "outcome",
            ],
        );
        assert_eq!(value["message"], "cloud change");
        assert_eq!(value["cloud"], "aws");
        assert_eq!(value["changes"], "trust policy; tags \"a\"");
        assert_eq!(value["digest"], record.digest);
        assert_eq!(value["drift"], true);
        assert_eq!(value["outcome"], "ok");
    }

    #[test]
    fn an_admission_line_carries_the_trace_as_one_escaped_string() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "api-0", "namespace": "payments"},
            "spec": {"serviceAccountName": "api", "containers": [{"name": "app", "image": "x"}]},
        }))
        .unwrap();
        let bindings = passport_webhook::Bindings::new(
            "payments",
            jiff::Timestamp::now(),
            std::sync::Arc::new(passport_webhook::Config::new("prod")),
        );
        let trace = passport_webhook::mutate(&pod, &bindings).unwrap().trace;
        assert!(!trace.steps.is_empty());
        let applied = vec!["payments/s3-reader".to_owned(), "payments/gcs".to_owned()];
        let line = Admission {
            correlation_id: "3b7e1f0c",
            namespace: "payments",
            pod: "api-7c5d8b9f4-*",
            service_account: "api",
            decision: "admitted",
            applied: &applied,
            skipped: &["payments/night-only"],
            compat: &[],
            trace: TraceText::Steps(&trace),
            dry_run: false,
        };
        let bytes = render(&admission_line(&line)).unwrap();
        let value = framed(
            &bytes,
            &[
                "correlation_id",
                "namespace",
                "pod",
                "service_account",
                "decision",
                "applied",
                "skipped",
                "compat",
                "trace",
                "dry_run",
            ],
        );
        assert_eq!(value["message"], "admission");
        assert_eq!(value["kind"], "Pod");
        assert_eq!(value["correlation_id"], "3b7e1f0c");
        assert_eq!(value["pod"], "api-7c5d8b9f4-*");
        assert_eq!(value["applied"], "payments/s3-reader,payments/gcs");
        assert_eq!(value["skipped"], "payments/night-only");
        assert_eq!(value["compat"], "");
        assert_eq!(
            value["trace"],
            trace.to_string(),
            "the trace as --explain words it"
        );
        assert_eq!(value["dry_run"], false);

        // A memo decision's trace, written once, gives the same line but for its time.
        let written = serde_json::value::to_raw_value(&trace.text()).unwrap();
        let again = render(&admission_line(&Admission {
            trace: TraceText::Json(&written),
            ..line
        }))
        .unwrap();
        let after_time = |bytes: &[u8]| {
            let text = std::str::from_utf8(bytes).unwrap();
            text[text.find("\"level\"").unwrap()..].to_owned()
        };
        assert_eq!(after_time(&again), after_time(&bytes));
    }
}
