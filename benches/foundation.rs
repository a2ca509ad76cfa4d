//! Foundation figures: import throughput (Buffered vs Sync), bytes on disk per interaction,
//! `history()` / popularity `recommend()` latency percentiles against a raw sled `get` of the very
//! same history records (measured interleaved in one process), and resident memory of an open
//! database. Run with `./scripts/bench` (sets up the data), or
//! `CONVERGEDB_ML100K=DIR cargo bench --bench foundation`. Writes a JSON report to
//! `target/bench-foundation.json` and prints a table.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::copy_dir;
use convergedb::import::{self, ImportOptions};
use convergedb::{Config, Db, Durability};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--rss-probe") {
        return rss_probe(Path::new(&args[pos + 1]));
    }
    let Some(ml) = std::env::var_os("CONVERGEDB_ML100K").map(PathBuf::from) else {
        eprintln!(
            "CONVERGEDB_ML100K is not set: run ./scripts/bench, which fetches MovieLens-100K"
        );
        return Ok(());
    };
    let amazon = std::env::var_os("CONVERGEDB_AMAZON_DIR").map(PathBuf::from);
    let work = tempfile::tempdir()?;
    let mut report = serde_json::Map::new();

    // 1. Import throughput, Buffered vs Sync, 3 runs each (median).
    let ml_import = |dir: &Path, d: Durability| -> Result<(Duration, u64), convergedb::Error> {
        let db = Config::new(dir).durability(d).open()?;
        let r = import::movielens(&db, &ml, &ImportOptions::default())?;
        db.flush()?;
        Ok((r.elapsed, r.interactions))
    };
    let mut rows = Vec::new();
    for (label, durability) in [
        ("buffered", Durability::default()),
        ("sync", Durability::Sync),
    ] {
        let t = median_rate(work.path(), &format!("ml-{label}"), |d| {
            ml_import(d, durability)
        })?;
        rows.push(("ml-100k", label, t));
    }
    if let Some(dir) = amazon.as_ref().filter(|d| d.is_dir()) {
        for (label, durability) in [
            ("buffered", Durability::default()),
            ("sync", Durability::Sync),
        ] {
            let t = median_rate(work.path(), &format!("amz-{label}"), |p| {
                let db = Config::new(p).durability(durability).open()?;
                let r = import::amazon(&db, dir, "Instruments", &ImportOptions::default())?;
                db.flush()?;
                Ok((r.elapsed, r.interactions))
            })?;
            rows.push(("amazon-instruments", label, t));
        }
    } else {
        eprintln!("CONVERGEDB_AMAZON_DIR not set or absent: Amazon import skipped");
    }
    println!("import throughput (median of 3, parse + validate + write):");
    let mut imports = Vec::new();
    for (data, mode, rate) in &rows {
        println!("  {data:<20} {mode:<9} {rate:>12.0} interactions/s");
        imports.push(json!({"dataset": data, "durability": mode, "interactions_per_s": rate}));
    }
    report.insert("import".into(), json!(imports));

    // 1b. Streaming writes: one interaction per call, Buffered vs Sync, on an imported ML-100K.
    let stream_dir = work.path().join("ml-sync-0");
    let mut streaming = Vec::new();
    println!("streaming writes (one interaction per record_interactions call, 2,000 calls):");
    for (label, durability) in [
        ("buffered", Durability::default()),
        ("sync", Durability::Sync),
    ] {
        let db = Config::new(&stream_dir).durability(durability).open()?;
        let calls = 2_000u64;
        let started = Instant::now();
        for i in 0..calls {
            let user = (i * 7 % 943 + 1).to_string();
            let item = (i * 13 % 1682 + 1).to_string();
            db.record_interactions(&[convergedb::Interaction::new(
                user,
                item,
                900_000_000 + i as i64,
            )])?;
        }
        let secs = started.elapsed().as_secs_f64();
        db.close()?;
        let rate = calls as f64 / secs;
        println!(
            "  {label:<9} {rate:>10.0} calls/s   {:>8.1} us/call",
            1e6 / rate
        );
        streaming
            .push(json!({"durability": label, "calls_per_s": rate, "us_per_call": 1e6 / rate}));
    }
    report.insert("streaming".into(), json!(streaming));

    // 2. Bytes on disk per interaction (ML-100K, Buffered, after flush and close).
    let db_dir = work.path().join("ml-buffered-0");
    let (apparent, allocated) = dir_size(&db_dir)?;
    println!(
        "bytes on disk per interaction (ML-100K): {:.1} allocated, {:.1} apparent",
        allocated as f64 / 1e5,
        apparent as f64 / 1e5
    );
    report.insert(
        "disk".into(),
        json!({"allocated_bytes": allocated, "apparent_bytes": apparent,
               "allocated_per_interaction": allocated as f64 / 1e5,
               "apparent_per_interaction": apparent as f64 / 1e5}),
    );

    // 3. Latency: convergedb vs raw sled get of the same records, interleaved.
    let raw_dir = work.path().join("raw-copy");
    copy_dir(&db_dir, &raw_dir)?;
    let db = Config::new(&db_dir).open()?;
    let raw = sled::open(&raw_dir)?.open_tree("histories")?;
    let users: Vec<String> = raw
        .iter()
        .keys()
        .map(|k| k.map(|k| String::from_utf8_lossy(&k).into_owned()))
        .collect::<Result<_, _>>()?;
    let n = 20_000;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % users.len() as u64) as usize
    };
    let (mut t_raw, mut t_hist, mut t_rec) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut sink = 0usize;
    for round in 0..(n + 2_000) {
        let u = &users[next()];
        let a = Instant::now();
        sink += raw.get(u.as_bytes())?.map(|v| v.len()).unwrap_or(0);
        let b = Instant::now();
        sink += db.history(u)?.entries.len();
        let c = Instant::now();
        sink += db.recommend(u, 10)?.items.len();
        let d = Instant::now();
        if round >= 2_000 {
            t_raw.push(b - a);
            t_hist.push(c - b);
            t_rec.push(d - c);
        }
    }
    std::hint::black_box(sink);
    let (raw_p, hist_p, rec_p) = (pct(&mut t_raw), pct(&mut t_hist), pct(&mut t_rec));
    println!("latency over {n} random ML-100K users (us):   p50      p99");
    println!(
        "  raw sled get (same record)          {:>8.2} {:>8.2}",
        raw_p.0, raw_p.1
    );
    println!(
        "  history()                           {:>8.2} {:>8.2}   p50 ratio {:.2}x",
        hist_p.0,
        hist_p.1,
        hist_p.0 / raw_p.0
    );
    println!(
        "  recommend(k = 10), popularity       {:>8.2} {:>8.2}   p50 ratio {:.2}x",
        rec_p.0,
        rec_p.1,
        rec_p.0 / raw_p.0
    );
    report.insert(
        "latency_us".into(),
        json!({"raw_get": {"p50": raw_p.0, "p99": raw_p.1},
               "history": {"p50": hist_p.0, "p99": hist_p.1, "p50_ratio": hist_p.0 / raw_p.0},
               "recommend_popularity_k10": {"p50": rec_p.0, "p99": rec_p.1, "p50_ratio": rec_p.0 / raw_p.0}}),
    );
    drop(db);
    drop(raw);

    // 4. Resident memory of an open ML-100K database, in a fresh process.
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("--rss-probe")
        .arg(&db_dir)
        .output()?;
    let probe: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    println!("resident memory, fresh process with the ML-100K database open after 10,000 recommends: {probe}");
    report.insert("memory".into(), probe);

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-foundation.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!("report: {}", path.display());
    Ok(())
}

fn median_rate(
    root: &Path,
    name: &str,
    mut run: impl FnMut(&Path) -> Result<(Duration, u64), convergedb::Error>,
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut rates = Vec::new();
    for i in 0..3 {
        let dir = root.join(format!("{name}-{i}"));
        let (elapsed, n) = run(&dir)?;
        rates.push(n as f64 / elapsed.as_secs_f64());
        if i > 0 {
            std::fs::remove_dir_all(&dir)?;
        }
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates[1])
}

fn pct(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
    (at(0.50), at(0.99))
}

fn dir_size(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (mut apparent, mut allocated) = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (a, b) = dir_size(&entry.path())?;
            apparent += a;
            allocated += b;
        } else {
            apparent += meta.len();
            allocated += meta.blocks() * 512;
        }
    }
    Ok((apparent, allocated))
}

fn rss_probe(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let db = Db::open_path(dir)?;
    let users = db.stats()?.users;
    let mut sink = 0;
    for i in 0..10_000u64 {
        let user = (i % users + 1).to_string();
        sink += db.recommend(&user, 10)?.items.len();
    }
    std::hint::black_box(sink);
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    println!(
        "{}",
        json!({"vm_rss_kib": field("VmRSS:"), "vm_hwm_kib": field("VmHWM:")})
    );
    Ok(())
}
