//! The load side of the webhook benchmark: `oha` runs against the null webhooks and Passport's,
//! each figure (fixed rates, then saturation) `rounds` times round-robin, read back from oha's
//! per-request CSV, and the medians of the per-round ratios.

use std::{path::Path, process::Stdio, time::Instant};

use serde_json::{Value, json};

/// How oha loads a server, and what it sends.
pub struct Oha<'a> {
    pub path: &'a Path,
    /// The AdmissionReview oha posts.
    pub body: &'a Path,
    /// Where oha's CSV files go.
    pub dir: &'a Path,
    /// Clock ticks per second of /proc/<pid>/stat.
    pub ticks: f64,
    pub connections: usize,
    /// Seconds of each run, and how many at its start are dropped (oha opens its TLS
    /// connections in the first second).
    pub seconds: u64,
    pub drop_seconds: f64,
    pub rounds: usize,
}

/// A server under load: `null`, `null-kube` or `passport`.
pub struct Target<'a> {
    pub name: &'static str,
    pub url: &'a str,
    pub pid: u32,
}

/// What one run measured, over the requests that started after the dropped seconds.
#[derive(Clone, Debug)]
pub struct Measured {
    pub requests: usize,
    pub per_second: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Server CPU over the whole run, in cores, and per request in µs.
    pub server_cores: f64,
    pub server_cpu_us_per_request: f64,
    pub response_bytes: u64,
}

/// CPU seconds (user + system, all threads) the process has used.
fn cpu_seconds(pid: u32, ticks_per_second: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / ticks_per_second
}

impl Oha<'_> {
    /// One run against `target`: at `rate` requests per second (with latency correction), or as
    /// fast as it goes; pinned to CPU 1 with one worker thread, or not.
    pub async fn run(
        &self,
        target: &Target<'_>,
        pin: bool,
        rate: Option<u32>,
        seconds: u64,
        csv: &Path,
    ) -> Measured {
        let mut command =
            tokio::process::Command::new(if pin { Path::new("taskset") } else { self.path });
        if pin {
            command
                .args(["-c", "1"])
                .arg(self.path)
                .args(["--worker-threads", "1"]);
        }
        command
            .args(["--no-tui", "--insecure", "-m", "POST"])
            .args(["-H", "Content-Type: application/json", "-D"])
            .arg(self.body)
            .args(["-c", &self.connections.to_string()])
            .args(["-z", &format!("{seconds}s")]);
        if let Some(rate) = rate {
            command.args(["-q", &rate.to_string(), "--latency-correction"]);
        }
        command
            .args(["--output-format", "csv", "-o"])
            .arg(csv)
            .arg(target.url)
            .stdin(Stdio::null());
        let cpu_before = cpu_seconds(target.pid, self.ticks);
        let started = Instant::now();
        let output = command.output().await.unwrap();
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(target.pid, self.ticks) - cpu_before;
        assert!(
            output.status.success(),
            "oha failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = std::fs::read_to_string(csv).unwrap();
        let mut latencies = Vec::new();
        let (mut all, mut bytes) = (0usize, 0u64);
        // request-start,DNS,DNS+dialup,Response-delay,request-duration,bytes,status
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 7, "an oha CSV line: {line}");
            assert_eq!(fields[6], "200", "not a 200 from {}: {line}", target.url);
            all += 1;
            bytes = fields[5].parse().unwrap();
            let start: f64 = fields[0].parse().unwrap();
            if start >= self.drop_seconds && start < seconds as f64 {
                latencies.push(fields[4].parse::<f64>().unwrap());
            }
        }
        assert!(
            !latencies.is_empty(),
            "no request after the dropped seconds"
        );
        latencies.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1;
            latencies[i] * 1e6
        };
        Measured {
            requests: latencies.len(),
            per_second: latencies.len() as f64 / (seconds as f64 - self.drop_seconds),
            p50_us: at(0.50),
            p99_us: at(0.99),
            server_cores: cpu / wall,
            server_cpu_us_per_request: cpu * 1e6 / all.max(1) as f64,
            response_bytes: bytes,
        }
    }

    /// Every figure of one mode: a fixed-rate warm-up of each server, then `rounds` rounds of
    /// each fixed rate and of saturation, the servers back to back (each round starting with
    /// the next one). Returns every run and, per figure, the medians and the medians of the
    /// per-round ratios (`servers` are the null webhook, the kube-rs null webhook, Passport and
    /// Passport without its memo, in that order).
    pub async fn measure(
        &self,
        pin: bool,
        rates: &[u32],
        servers: [Target<'_>; SERVERS],
    ) -> (Vec<Value>, Vec<Value>) {
        let mode = if pin { "pinned" } else { "unpinned" };
        for server in &servers {
            let csv = self.dir.join("warm-up.csv");
            self.run(server, pin, Some(1000), 2, &csv).await;
        }
        let mut figures: Vec<Option<u32>> = rates.iter().copied().map(Some).collect();
        figures.push(None);
        let mut results: Vec<Vec<[Option<Measured>; SERVERS]>> =
            vec![vec![[None, None, None, None]; self.rounds]; figures.len()];
        let mut runs = Vec::new();
        #[allow(clippy::needless_range_loop)]
        // `round` indexes the inner vectors and picks the order
        for round in 0..self.rounds {
            for (f, rate) in figures.iter().enumerate() {
                // Rotating the order keeps a drift in the machine's load from always favouring
                // the same server.
                for i in (0..servers.len()).map(|k| (k + round) % servers.len()) {
                    let server = &servers[i];
                    let figure = rate.map_or("max".to_owned(), |r| r.to_string());
                    let csv = self
                        .dir
                        .join(format!("{mode}-{figure}-{}-{round}.csv", server.name));
                    let measured = self.run(server, pin, *rate, self.seconds, &csv).await;
                    eprintln!(
                        "webhook bench: {mode} {figure} {} round {round}: {measured:?}",
                        server.name
                    );
                    let mut run = measured_json(&measured);
                    run["pinned"] = pin.into();
                    run["rate"] = figure_json(*rate);
                    run["server"] = server.name.into();
                    run["round"] = round.into();
                    runs.push(run);
                    results[f][round][i] = Some(measured);
                }
            }
        }
        let summary = figures
            .iter()
            .zip(results)
            .map(|(rate, rounds)| {
                let rounds: Vec<[Measured; SERVERS]> = rounds
                    .into_iter()
                    .map(|measured| measured.map(|m| m.unwrap()))
                    .collect();
                summarize(pin, *rate, &rounds)
            })
            .collect();
        (runs, summary)
    }
}

fn figure_json(rate: Option<u32>) -> Value {
    rate.map_or(Value::from("max"), Value::from)
}

/// How many servers each round loads.
pub const SERVERS: usize = 4;

/// One figure: each server's medians, the medians of Passport's per-round ratios to the null
/// webhook (`ratios`, what the targets read) and to the kube-rs null webhook
/// (`ratiosToKubeNull`, for context), and those of Passport without its memo to the null
/// webhook (`ratiosWithoutMemo`: every review parsed and decided, as for pods that all differ).
fn summarize(pin: bool, rate: Option<u32>, rounds: &[[Measured; SERVERS]]) -> Value {
    const PASSPORT: usize = 2;
    const WITHOUT_MEMO: usize = 3;
    let ratios = |of: usize, base: usize| {
        let ratio = |get: fn(&Measured) -> f64| {
            round3(median(
                rounds.iter().map(|r| get(&r[of]) / get(&r[base])).collect(),
            ))
        };
        json!({
            "p50": ratio(|m| m.p50_us),
            "p99": ratio(|m| m.p99_us),
            "perSecond": ratio(|m| m.per_second),
            "serverCpuPerRequest": ratio(|m| m.server_cpu_us_per_request),
        })
    };
    let side = |i: usize| {
        let med = |get: fn(&Measured) -> f64| median(rounds.iter().map(|r| get(&r[i])).collect());
        json!({
            "perSecond": med(|m| m.per_second).round(),
            "p50Us": med(|m| m.p50_us).round(),
            "p99Us": med(|m| m.p99_us).round(),
            "serverCores": round3(med(|m| m.server_cores)),
            "serverCpuUsPerRequest": round1(med(|m| m.server_cpu_us_per_request)),
        })
    };
    json!({
        "pinned": pin,
        "rate": figure_json(rate),
        "rounds": rounds.len(),
        "null": side(0),
        "nullKube": side(1),
        "passport": side(PASSPORT),
        "passportWithoutMemo": side(WITHOUT_MEMO),
        "ratios": ratios(PASSPORT, 0),
        "ratiosToKubeNull": ratios(PASSPORT, 1),
        "ratiosWithoutMemo": ratios(WITHOUT_MEMO, 0),
    })
}

fn measured_json(m: &Measured) -> Value {
    json!({
        "requests": m.requests,
        "perSecond": m.per_second.round(),
        "p50Us": m.p50_us.round(),
        "p99Us": m.p99_us.round(),
        "serverCores": round3(m.server_cores),
        "serverCpuUsPerRequest": round1(m.server_cpu_us_per_request),
        "responseBytes": m.response_bytes,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// The targets of DESIGN.md section 7, from the pinned figures: p99 at 5,000/s at most 1.2x the
/// null webhook's, saturation throughput at least 0.6x; for Passport as it ships (the
/// benchmark's review is a ReplicaSet's pod, the same at every request, so its memo answers),
/// and without its memo (every review parsed and decided).
pub fn targets(summary: &[Value]) -> Value {
    let ratio = |rate: Value, ratios: &str, which: &str| {
        summary
            .iter()
            .find(|s| s["pinned"] == true && s["rate"] == rate)
            .and_then(|s| s[ratios][which].as_f64())
    };
    let figures = |ratios: &str| {
        let p99 = ratio(5000.into(), ratios, "p99");
        let throughput = ratio("max".into(), ratios, "perSecond");
        json!({
            "p99At5000PerSecondRatio": {"value": p99, "target": "at most 1.2", "met": p99.map(|r| r <= 1.2)},
            "maxThroughputRatio": {"value": throughput, "target": "at least 0.6", "met": throughput.map(|r| r >= 0.6)},
        })
    };
    let mut targets = figures("ratios");
    targets["withoutMemo"] = figures("ratiosWithoutMemo");
    targets
}
