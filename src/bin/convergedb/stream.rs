//! `convergedb stream`: replays interactions as a live stream against a database with a model
//! attached, reading recommendations as it goes, and shows the refresh pipeline at work: which
//! source answered the reads (fresh cached list, stale cached list, ANN, popularity), the queue
//! depth, refresh throughput and the freshness lag.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use convergedb::{Db, Interaction, ModelOptions, Source};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

/// What to replay and how fast.
pub(crate) struct StreamArgs<'a> {
    pub file: &'a Path,
    pub model: &'a Path,
    pub rate: f64,
    pub reads_per_event: usize,
    pub limit: Option<usize>,
    pub k: usize,
    pub warm: bool,
    pub json: bool,
    /// Refresh happens elsewhere (other processes on a cluster tier): drain by reading the
    /// users until their lists are current instead of `wait_idle`, which would refresh here.
    pub refreshed_elsewhere: bool,
}

/// The freshness lag as reads see it: from a user's first interaction not yet reflected in a
/// list to the `computed_at_ms` of the first current list a read of that user returns.
#[derive(Default)]
struct ReadLags {
    waiting: std::collections::HashMap<String, u64>,
    ms: Vec<f64>,
}

impl ReadLags {
    fn recorded(&mut self, user: &str) {
        self.waiting.entry(user.to_string()).or_insert_with(now_ms);
    }

    fn read(&mut self, user: &str, rec: &convergedb::Recommendation) {
        if rec.source != Source::Model || rec.stale {
            return;
        }
        if let (Some(since), Some(stamps)) = (self.waiting.remove(user), &rec.stamps) {
            self.ms
                .push(stamps.computed_at_ms.saturating_sub(since) as f64);
        }
    }

    fn summary(&mut self) -> Option<serde_json::Value> {
        if self.ms.is_empty() {
            return None;
        }
        self.ms.sort_by(f64::total_cmp);
        let q = |q: f64| self.ms[((self.ms.len() - 1) as f64 * q) as usize];
        Some(serde_json::json!({
            "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1.0), "users": self.ms.len(),
            "never_current": self.waiting.len(),
            "never_current_users": self.waiting.keys().take(10).collect::<Vec<_>>(),
        }))
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Default, serde::Serialize)]
struct Tally {
    fresh: u64,
    stale: u64,
    ann: u64,
    popularity: u64,
}

impl Tally {
    fn add(&mut self, source: Source, stale: bool) {
        match (source, stale) {
            (Source::Model, false) => self.fresh += 1,
            (Source::Model, true) => self.stale += 1,
            (Source::Ann, _) => self.ann += 1,
            _ => self.popularity += 1,
        }
    }

    fn total(&self) -> u64 {
        self.fresh + self.stale + self.ann + self.popularity
    }

    fn line(&self) -> String {
        let t = self.total().max(1) as f64;
        format!(
            "fresh {:.0}% stale {:.0}% ann {:.0}% popularity {:.0}%",
            100.0 * self.fresh as f64 / t,
            100.0 * self.stale as f64 / t,
            100.0 * self.ann as f64 / t,
            100.0 * self.popularity as f64 / t
        )
    }
}

pub(crate) fn stream(db: &Db, args: StreamArgs<'_>) -> CliResult {
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        return Err("--rate must be a positive number of interactions per second".into());
    }
    let mut events = convergedb::import::read_interactions_jsonl(args.file)?;
    if let Some(n) = args.limit {
        events.truncate(n);
    }
    let info = db.attach_model(args.model, ModelOptions::new())?;
    eprintln!(
        "model {} ({:?} on ONNX Runtime {}), {} events at {} interactions/s, {} reads per event",
        info.model_id,
        info.provider,
        info.ort_version,
        events.len(),
        args.rate,
        args.reads_per_event
    );
    if args.warm {
        let started = Instant::now();
        let bar = spinner("warming: computing every user's list");
        db.wait_idle()?;
        bar.finish_and_clear();
        let s = db.refresh_stats();
        eprintln!(
            "warm: {} lists in {:.1} s",
            s.lists_written,
            started.elapsed().as_secs_f64()
        );
    }
    let users: Vec<String> = events.iter().map(|e| e.user.clone()).collect();
    db.reset_refresh_stats();
    let bar = ProgressBar::new(events.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} events | {msg}")?.progress_chars("=> "),
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut tally = Tally::default();
    let mut read_lags = ReadLags::default();
    let mut read_ns: Vec<u64> = Vec::new();
    let mut samples: Vec<BTreeMap<&'static str, f64>> = Vec::new();
    let started = Instant::now();
    let mut last_shown = Instant::now();
    for (i, e) in events.iter().enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 / args.rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        db.record_interactions(std::slice::from_ref::<Interaction>(e))?;
        read_lags.recorded(&e.user);
        for r in 0..args.reads_per_event {
            // The user who just acted first, then random users of the stream.
            let user = if r == 0 {
                &e.user
            } else {
                &users[rng.gen_range(0..users.len())]
            };
            let t = Instant::now();
            let rec = db.recommend(user, args.k)?;
            read_ns.push(t.elapsed().as_nanos() as u64);
            tally.add(rec.source, rec.stale);
            read_lags.read(user, &rec);
        }
        bar.inc(1);
        if last_shown.elapsed() >= Duration::from_millis(250) || i + 1 == events.len() {
            last_shown = Instant::now();
            let s = db.refresh_stats();
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            let throughput = (s.lists_written) as f64 / secs;
            bar.set_message(format!(
                "{} | queue {} | refresh {:.0} users/s | lag p99 {}",
                tally.line(),
                s.queued + s.in_flight,
                throughput,
                s.lag
                    .as_ref()
                    .map_or("-".into(), |l| format!("{:.0} ms", l.p99_ms))
            ));
            samples.push(BTreeMap::from([
                ("t_s", secs),
                ("queue", (s.queued + s.in_flight) as f64),
                ("refresh_per_s", throughput),
            ]));
        }
    }
    bar.finish();
    let stream_secs = started.elapsed().as_secs_f64();
    let drain = Instant::now();
    if !args.refreshed_elsewhere {
        db.wait_idle()?;
    }
    // Read every user still waiting until its list is current, or until 10 s pass without
    // one more becoming current (a user whose list is empty, every candidate being in its
    // history, never shows a current list: it is answered by the fallback).
    let mut progress = Instant::now();
    while !read_lags.waiting.is_empty() && progress.elapsed() < Duration::from_secs(10) {
        let users: Vec<String> = read_lags.waiting.keys().cloned().collect();
        let before = users.len();
        for u in users {
            let rec = db.recommend(&u, args.k)?;
            read_lags.read(&u, &rec);
        }
        if read_lags.waiting.len() < before {
            progress = Instant::now();
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let drain_secs = drain.elapsed().as_secs_f64();
    let lag_by_reads = read_lags.summary();
    let s = db.refresh_stats();
    read_ns.sort_unstable();
    let pct = |q: f64| {
        read_ns
            .get(((read_ns.len().max(1) - 1) as f64 * q) as usize)
            .map_or(0.0, |&ns| ns as f64 / 1e3)
    };
    let summary = serde_json::json!({
        "events": events.len(),
        "target_rate": args.rate,
        "achieved_rate": events.len() as f64 / stream_secs.max(1e-9),
        "stream_seconds": stream_secs,
        "drain_seconds": drain_secs,
        "reads": tally,
        "read_us": {"p50": pct(0.5), "p99": pct(0.99)},
        "lists_written": s.lists_written,
        "refresh_per_s": (s.lists_written) as f64 / (stream_secs + drain_secs).max(1e-9),
        "mean_batch": s.batched_users as f64 / (s.batches.max(1)) as f64,
        "conflicts": s.conflicts,
        "failures": s.failures,
        "panics": s.panics,
        "lag_ms": s.lag,
        "lag_by_reads_ms": lag_by_reads,
        "timeline": samples,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "replayed {} events in {:.1} s ({:.0}/s), queue drained in {:.1} s",
            events.len(),
            stream_secs,
            events.len() as f64 / stream_secs.max(1e-9),
            drain_secs
        );
        println!("reads by source: {}", tally.line());
        println!(
            "recommend latency: p50 {:.1} us, p99 {:.1} us",
            pct(0.5),
            pct(0.99)
        );
        println!(
            "lists written: {} ({:.1} users/s, mean batch {:.1}); conflicts {}, failures {}, panics {}",
            s.lists_written,
            (s.lists_written) as f64 / (stream_secs + drain_secs).max(1e-9),
            s.batched_users as f64 / (s.batches.max(1)) as f64,
            s.conflicts,
            s.failures,
            s.panics
        );
        if let Some(l) = &s.lag {
            println!(
                "freshness lag (queued -> fresh list): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} refreshes",
                l.p50_ms, l.p99_ms, l.max_ms, l.count
            );
        }
        if let Some(l) = &lag_by_reads {
            println!(
                "freshness lag seen by reads (interaction -> current list computed): p50 {} ms, p99 {} ms, max {} ms over {} users ({} without a current list, e.g. an empty one: {})",
                l["p50_ms"], l["p99_ms"], l["max_ms"], l["users"], l["never_current"], l["never_current_users"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn spinner(msg: &'static str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_message(msg);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
