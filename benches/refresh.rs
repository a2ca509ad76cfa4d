//! The update-trigger layer's figures (issue 6), with the shipped ML-100K bundle on
//! MovieLens-100K (`CONVERGEDB_ML100K`; `./scripts/bench-refresh` sets everything up).
//!
//! `cargo bench --bench refresh -- latency` — cached `recommend(user, 10)` against a raw sled
//!   get of the same list bytes, in the same process on the same database: per-call p50/p99
//!   (each call timed alone, so both include ~20-30 ns of clock reads) and the mean over
//!   batches of calls (no per-call clock), single-threaded and with 2 threads.
//! `cargo bench --bench refresh -- stream [SECS] [RATES] [MAX_BATCH]` — interactions streamed at
//!   10, 100 and 1,000 per second (or the comma-separated RATES, with `refresh_max_batch`) (random users and items of ML-100K) for SECS seconds each (default 30) against
//!   a database whose lists are all current, one background worker: refresh throughput, queue
//!   depth, freshness lag p50/p99 (queued -> fresh list written, from `stats().refresh.lag`).
//! `cargo bench --bench refresh -- soak [MINUTES] [RATE]` — a long stream (default 10 minutes at
//!   200 interactions/s) with one reader thread, sampling RSS every 30 s.
//!
//! Each mode prints one JSON document.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use convergedb::import::{self, ImportOptions};
use convergedb::{Config, Db, Interaction, ModelOptions, Source};
use rand::{Rng, SeedableRng};
use serde_json::json;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// ML-100K with the bundle's catalog and tokenization, the model attached, every list current.
fn setup(dir: &std::path::Path, workers: usize) -> Result<Db, Box<dyn std::error::Error>> {
    setup_batch(dir, workers, convergedb::RefreshParams::default().max_batch)
}

fn setup_batch(
    dir: &std::path::Path,
    workers: usize,
    max_batch: usize,
) -> Result<Db, Box<dyn std::error::Error>> {
    let ml = std::env::var_os("CONVERGEDB_ML100K")
        .map(PathBuf::from)
        .ok_or("set CONVERGEDB_ML100K (./scripts/bench-refresh does)")?;
    let db = Config::new(dir)
        .refresh_workers(workers)
        .refresh_max_batch(max_batch)
        .open()?;
    import::movielens(&db, &ml, &ImportOptions::default())?;
    let bundle = root().join("models/ml100k");
    import::items_jsonl(&db, &bundle.join("items.jsonl"), &ImportOptions::default())?;
    db.import_tokenization(&bundle.join("tokenization.json"))?;
    db.attach_model(&bundle, ModelOptions::new())?;
    let t = Instant::now();
    db.wait_idle()?;
    eprintln!(
        "warm-up: {} lists in {:.1} s",
        db.stats()?.cached_lists,
        t.elapsed().as_secs_f64()
    );
    Ok(db)
}

fn users(db: &Db) -> Vec<String> {
    db.users().map(Result::unwrap).collect()
}

fn pct(sorted: &[u64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize] as f64
}

/// Per-call latencies (ns) of `f` over `users`, `rounds` passes, plus the mean from untimed
/// batches.
fn time_calls(users: &[String], rounds: usize, f: &(dyn Fn(&str) + Sync)) -> (Vec<u64>, f64) {
    let mut lat = Vec::with_capacity(users.len() * rounds);
    for _ in 0..rounds {
        for u in users {
            let t = Instant::now();
            f(u);
            lat.push(t.elapsed().as_nanos() as u64);
        }
    }
    lat.sort_unstable();
    let t = Instant::now();
    for _ in 0..rounds {
        for u in users {
            f(u);
        }
    }
    let mean = t.elapsed().as_nanos() as f64 / (users.len() * rounds) as f64;
    (lat, mean)
}

fn summary(name: &str, threads: usize, lat: &[u64], mean: f64) -> serde_json::Value {
    json!({"what": name, "threads": threads, "p50_ns": pct(lat, 0.5), "p99_ns": pct(lat, 0.99),
           "mean_ns_untimed": mean})
}

fn latency(k: usize) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let db = setup(dir.path(), 0)?;
    let users = users(&db);
    // Every user answers from a current cached list.
    for u in &users {
        let r = db.recommend(u, 10)?;
        if r.source != Source::Model || r.stale {
            eprintln!(
                "note: user {u} is served by {:?} (stale {})",
                r.source, r.stale
            );
        }
    }
    let rounds = 200;
    let raw = |u: &str| {
        std::hint::black_box(db.raw_cached_list_len(u).unwrap());
    };
    let rec = |u: &str| {
        std::hint::black_box(db.recommend(u, k).unwrap());
    };
    thread_local! {
        static BUF: std::cell::RefCell<convergedb::Recommendation> = Default::default();
    }
    let rec_into = |u: &str| {
        BUF.with(|b| {
            let mut b = b.borrow_mut();
            db.recommend_into(u, k, &mut b).unwrap();
            std::hint::black_box(&*b);
        });
    };
    let mut out = Vec::new();
    for threads in [1usize, 2] {
        for (name, f) in [
            ("raw sled get", &raw as &(dyn Fn(&str) + Sync)),
            ("cached recommend", &rec),
            ("cached recommend_into", &rec_into),
        ] {
            // Warm, then measure; with 2 threads both run the same loop at once.
            time_calls(&users, 5, f);
            let results: Vec<(Vec<u64>, f64)> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..threads)
                    .map(|_| s.spawn(|| time_calls(&users, rounds, f)))
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let mut lat: Vec<u64> = results.iter().flat_map(|r| r.0.clone()).collect();
            lat.sort_unstable();
            let mean = results.iter().map(|r| r.1).sum::<f64>() / threads as f64;
            out.push(summary(name, threads, &lat, mean));
        }
    }
    let bytes: Vec<usize> = users
        .iter()
        .filter_map(|u| db.raw_cached_list_len(u).unwrap())
        .collect();
    let mut ratios = Vec::new();
    for group in out.chunks(3) {
        let raw = &group[0];
        for rec in &group[1..] {
            let r = |f: &str| rec[f].as_f64().unwrap() / raw[f].as_f64().unwrap();
            ratios.push(json!({
                "what": rec["what"], "threads": raw["threads"],
                "p50_ratio": r("p50_ns"), "p99_ratio": r("p99_ns"), "mean_ratio": r("mean_ns_untimed"),
            }));
        }
    }
    Ok(json!({"mode": "latency", "users": users.len(), "k": k,
              "mean_list_bytes": bytes.iter().sum::<usize>() as f64 / bytes.len().max(1) as f64,
              "calls_per_user": rounds, "results": out, "ratios": ratios}))
}

/// Streams random interactions at `rate`/s for `secs` into `db`; optional reader thread.
fn stream(db: &Db, rate: f64, secs: f64, reader: bool, sample: &mut dyn FnMut(f64)) -> u64 {
    let users = users(db);
    let items: Vec<String> = (1..=1682).map(|i| i.to_string()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(rate as u64);
    let stop = Arc::new(AtomicBool::new(false));
    let reads = std::thread::scope(|s| {
        let handle = reader.then(|| {
            let (db, users, stop) = (db.clone(), users.clone(), Arc::clone(&stop));
            s.spawn(move || {
                let mut n = 0u64;
                let mut rng = rand::rngs::StdRng::seed_from_u64(1);
                while !stop.load(Ordering::Relaxed) {
                    let u = &users[rng.gen_range(0..users.len())];
                    std::hint::black_box(db.recommend(u, 10).unwrap());
                    n += 1;
                    if n.is_multiple_of(64) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                n
            })
        });
        let started = Instant::now();
        let mut next_sample = 0.0;
        let mut i = 0u64;
        while started.elapsed().as_secs_f64() < secs {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            if let Some(w) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(w);
            }
            let u = &users[rng.gen_range(0..users.len())];
            let it = &items[rng.gen_range(0..items.len())];
            db.record_interactions(&[Interaction::new(
                u.clone(),
                it.clone(),
                2_000_000_000 + i as i64,
            )])
            .unwrap();
            i += 1;
            let t = started.elapsed().as_secs_f64();
            if t >= next_sample {
                sample(t);
                next_sample += 1.0;
            }
        }
        stop.store(true, Ordering::Relaxed);
        handle.map_or(0, |h| h.join().unwrap())
    });
    let _ = reads;
    (secs * rate) as u64
}

fn stream_mode(
    secs: f64,
    rates: &[f64],
    max_batch: usize,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let mut phases = Vec::new();
    // Background workers (default 1; CONVERGEDB_BENCH_WORKERS=2 uses both cores of this VM).
    let workers: usize = std::env::var("CONVERGEDB_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for &rate in rates {
        let dir = tempfile::tempdir()?;
        let db = setup_batch(dir.path(), workers, max_batch)?;
        db.reset_refresh_stats();
        let before = db.refresh_stats();
        let mut max_queue = 0u64;
        let t = Instant::now();
        stream(&db, rate, secs, false, &mut |_| {
            let s = db.refresh_stats();
            max_queue = max_queue.max(s.queued + s.in_flight);
        });
        let stream_secs = t.elapsed().as_secs_f64();
        let during = db.refresh_stats();
        let drain = Instant::now();
        db.wait_idle()?;
        let drain_secs = drain.elapsed().as_secs_f64();
        let after = db.refresh_stats();
        let written = during.lists_written - before.lists_written;
        phases.push(json!({
            "rate": rate, "max_batch": max_batch, "workers": workers, "seconds": stream_secs,
            "interactions": db.stats()?.interactions_recorded,
            "lists_per_s_during": written as f64 / stream_secs,
            "max_queue": max_queue,
            "drain_seconds": drain_secs,
            "mean_batch": (after.batched_users - before.batched_users) as f64
                / (after.batches - before.batches).max(1) as f64,
            "conflicts": after.conflicts - before.conflicts,
            "lag_ms": after.lag,
        }));
        eprintln!("{}", phases.last().unwrap());
        db.close()?;
    }
    Ok(json!({"mode": "stream", "phases": phases}))
}

fn soak(minutes: f64, rate: f64) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let db = setup(dir.path(), 1)?;
    db.reset_refresh_stats();
    let mut samples = Vec::new();
    let mut next = 0.0;
    stream(&db, rate, minutes * 60.0, true, &mut |t| {
        if t >= next {
            let s = db.refresh_stats();
            let row = json!({"t_s": t.round(), "rss_mib": rss_kib() as f64 / 1024.0,
                             "queue": s.queued + s.in_flight, "lists_written": s.lists_written,
                             "lag_p99_ms": s.lag.as_ref().map(|l| l.p99_ms)});
            eprintln!("{row}");
            samples.push(row);
            next += 30.0;
        }
    });
    db.wait_idle()?;
    let s = db.refresh_stats();
    Ok(
        json!({"mode": "soak", "minutes": minutes, "rate": rate, "samples": samples,
              "final_rss_mib": rss_kib() as f64 / 1024.0, "refresh": s}),
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // cargo bench passes "--bench"; take our own words after it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mode = args.first().map(String::as_str).unwrap_or("latency");
    let num = |i: usize, d: f64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let out = match mode {
        "latency" => latency(num(1, 10.0) as usize)?,
        "stream" => {
            // stream [SECS] [RATE,RATE,...] [MAX_BATCH]
            let rates: Vec<f64> = args
                .get(2)
                .map(|s| s.split(',').filter_map(|r| r.parse().ok()).collect())
                .unwrap_or_else(|| vec![10.0, 100.0, 1000.0]);
            let max_batch = num(3, convergedb::RefreshParams::default().max_batch as f64);
            stream_mode(num(1, 30.0), &rates, max_batch as usize)?
        }
        "soak" => soak(num(1, 10.0), num(2, 200.0))?,
        other => return Err(format!("unknown mode {other:?}: latency, stream or soak").into()),
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
