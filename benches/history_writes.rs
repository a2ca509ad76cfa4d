//! The live write path (issue 18), each figure against a raw sled baseline measured in the same
//! process: `cargo bench --bench history_writes` (JSON in `target/bench-history-writes.json`).
//!
//! 1. One interaction per `record_interactions` call (Buffered), p50/p99, for a user with 10
//!    entries and a user at the 10,000-entry cap, interleaved; against a raw sled insert of the
//!    user's head record (the bytes the append rewrites) and of one 24-byte event.
//! 2. Sync calls/s and p99 with 1, 4 and 16 writer threads.
//! 3. Disk per interaction after 1,000,000 events over 100 heavy users, against a raw sled
//!    append of the same events (one key per event).

use std::time::{Duration, Instant};

use convergedb::{Config, Db, Durability, Interaction, Item};
use serde_json::json;

const ITEMS: usize = 1000;

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e6
}

fn catalog(db: &Db) {
    let items: Vec<Item> = (0..ITEMS).map(|i| Item::new(format!("i{i}"))).collect();
    db.put_items(&items).unwrap();
}

fn event(user: &str, n: usize) -> Interaction {
    Interaction::new(user, format!("i{}", n % ITEMS), n as i64)
}

fn dir_bytes(path: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(path).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    total
}

/// p50 of one 100-byte append followed by `fdatasync`, 2,000 times, in a file beside the
/// databases: the disk's price of making one commit durable.
fn raw_fdatasync_us(path: &std::path::Path) -> f64 {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let mut lat: Vec<Duration> = (0..2000)
        .map(|_| {
            let t = Instant::now();
            file.write_all(&[7u8; 100]).unwrap();
            file.sync_data().unwrap();
            t.elapsed()
        })
        .collect();
    pct(&mut lat, 0.5)
}

fn main() {
    let work = tempfile::tempdir().unwrap();
    let mut report = serde_json::Map::new();

    // 1. Single-interaction calls, short vs capped history, interleaved, with raw baselines.
    let db = Config::new(work.path().join("single")).open().unwrap();
    catalog(&db);
    let heavy: Vec<Interaction> = (0..10_000).map(|n| event("heavy", n)).collect();
    for batch in heavy.chunks(5000) {
        db.record_interactions(batch).unwrap();
    }
    db.record_interactions(&(0..10).map(|n| event("light", n)).collect::<Vec<_>>())
        .unwrap();
    let raw = sled::Config::new()
        .path(work.path().join("raw"))
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(Some(500))
        .open()
        .unwrap();
    let raw_tree = raw.open_tree("t").unwrap();
    let head_bytes = vec![7u8; 49 + 24 * 16]; // a head with the average tail of 16 entries
    let event_bytes = [7u8; 24];
    let (pop_bytes, counts_bytes) = ([7u8; 9], [7u8; 24]);
    let calls = 20_000;
    let mut raw_records = Vec::with_capacity(calls);
    let (mut light, mut heavy_t, mut raw_head, mut raw_event) = (
        Vec::with_capacity(calls),
        Vec::with_capacity(calls),
        Vec::with_capacity(calls),
        Vec::with_capacity(calls),
    );
    for n in 0..calls {
        let t = Instant::now();
        db.record_interactions(&[event("light", 100 + n)]).unwrap();
        light.push(t.elapsed());
        let t = Instant::now();
        db.record_interactions(&[event("heavy", 10_000 + n)])
            .unwrap();
        heavy_t.push(t.elapsed());
        let t = Instant::now();
        raw_tree.insert(b"light-head", &head_bytes[..]).unwrap();
        raw_head.push(t.elapsed());
        let mut key = b"ev".to_vec();
        key.extend_from_slice(&(n as u64).to_be_bytes());
        let t = Instant::now();
        raw_tree.insert(key, &event_bytes[..]).unwrap();
        raw_event.push(t.elapsed());
        // The records one call writes: the head, the item's popularity, the counts.
        let t = Instant::now();
        raw_tree.insert(b"light-head", &head_bytes[..]).unwrap();
        raw_tree.insert(b"popular-7", &pop_bytes[..]).unwrap();
        raw_tree.insert(b"counts", &counts_bytes[..]).unwrap();
        raw_records.push(t.elapsed());
    }
    assert_eq!(db.history("heavy").unwrap().entries.len(), 10_000);
    let (l50, l99) = (pct(&mut light, 0.5), pct(&mut light, 0.99));
    let (h50, h99) = (pct(&mut heavy_t, 0.5), pct(&mut heavy_t, 0.99));
    let (rh50, re50) = (pct(&mut raw_head, 0.5), pct(&mut raw_event, 0.5));
    let rr50 = pct(&mut raw_records, 0.5);
    println!("one interaction per call, Buffered, {calls} calls each, interleaved (us):");
    println!("  user with 10 entries        p50 {l50:>7.2}  p99 {l99:>7.2}");
    println!(
        "  user with 10,000 (at cap)   p50 {h50:>7.2}  p99 {h99:>7.2}   heavy/light p50 {:.2}x",
        h50 / l50
    );
    println!(
        "  raw sled insert, head bytes p50 {rh50:>7.2}   call/raw {:.1}x",
        l50 / rh50
    );
    println!(
        "  raw sled insert, 24 B event p50 {re50:>7.2}   call/raw {:.1}x",
        l50 / re50
    );
    println!(
        "  raw sled inserts of the 3 records one call writes (head, popularity, counts) p50 {rr50:>7.2}   call/raw {:.1}x",
        l50 / rr50
    );
    report.insert(
        "single_call_us".into(),
        json!({"light": {"p50": l50, "p99": l99}, "heavy_10000": {"p50": h50, "p99": h99},
               "raw_insert_head_p50": rh50, "raw_insert_event_p50": re50, "raw_inserts_same_records_p50": rr50,
               "light_over_raw_same_records_p50": l50 / rr50,
               "heavy_over_light_p50": h50 / l50, "light_over_raw_head_p50": l50 / rh50,
               "light_over_raw_event_p50": l50 / re50}),
    );
    drop(db);
    drop(raw_tree);
    drop(raw);

    // 2. Sync: 1 writer vs 4 writers, against the disk's own floor: a synchronous writer has one
    // call in flight, so W writers finish at most W calls per flush, and no commit scheme that
    // makes a write durable before acknowledging it goes below one fdatasync per group.
    let fsync_p50 = raw_fdatasync_us(&work.path().join("fdatasync-probe"));
    println!("raw append of 100 B + fdatasync on this disk: p50 {fsync_p50:.1} us");
    let mut sync_rows = Vec::new();
    for writers in [1usize, 4, 16] {
        let db = Config::new(work.path().join(format!("sync{writers}")))
            .durability(Durability::Sync)
            .open()
            .unwrap();
        catalog(&db);
        let per = if writers == 1 { 2000 } else { 4000 / writers };
        let start = Instant::now();
        let threads: Vec<_> = (0..writers)
            .map(|w| {
                let db = db.clone();
                std::thread::spawn(move || {
                    let mut lat = Vec::with_capacity(per);
                    for n in 0..per {
                        let t = Instant::now();
                        db.record_interactions(&[event(&format!("w{w}-{}", n % 50), n)])
                            .unwrap();
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut lat: Vec<Duration> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let secs = start.elapsed().as_secs_f64();
        let rate = lat.len() as f64 / secs;
        let stats = db.stats().unwrap();
        let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
        println!(
            "Sync, {writers} writer(s): {rate:>8.0} calls/s  p50 {p50:>8.1} us  p99 {p99:>8.1} us  flushes {} for {} calls",
            stats.sync_flushes,
            lat.len()
        );
        let bound = writers as f64 * 1e6 / fsync_p50;
        println!(
            "  bound {writers} / fdatasync = {bound:.0} calls/s; measured {:.2} of it",
            rate / bound
        );
        sync_rows.push(json!({"writers": writers, "calls_per_s": rate, "p50_us": p50, "p99_us": p99,
                              "fdatasync_bound_calls_per_s": bound,
                              "flushes": stats.sync_flushes, "calls": lat.len(), "grouped_batches": stats.grouped_batches}));
    }
    let ratio = sync_rows[1]["calls_per_s"].as_f64().unwrap()
        / sync_rows[0]["calls_per_s"].as_f64().unwrap();
    let ratio16 = sync_rows[2]["calls_per_s"].as_f64().unwrap()
        / sync_rows[0]["calls_per_s"].as_f64().unwrap();
    println!("  4 writers / 1 writer: {ratio:.2}x; 16 writers / 1 writer: {ratio16:.2}x");
    report.insert(
        "sync".into(),
        json!({"rows": sync_rows, "four_over_one": ratio, "sixteen_over_one": ratio16,
               "raw_fdatasync_p50_us": fsync_p50}),
    );

    // 3. Disk per interaction: 1,000,000 events over 100 heavy users, vs raw per-event keys.
    let events = 1_000_000usize;
    let path = work.path().join("disk");
    let db = Config::new(&path).open().unwrap();
    catalog(&db);
    let base = dir_bytes(&path);
    let start = Instant::now();
    let mut batch = Vec::with_capacity(100);
    for n in 0..events {
        batch.push(event(&format!("h{}", n % 100), n));
        if batch.len() == 100 {
            db.record_interactions(&batch).unwrap();
            batch.clear();
        }
    }
    db.flush().unwrap();
    let stream_secs = start.elapsed().as_secs_f64();
    drop(db);
    let ours = dir_bytes(&path) - base;
    let raw_path = work.path().join("disk-raw");
    let raw = sled::Config::new()
        .path(&raw_path)
        .mode(sled::Mode::HighThroughput)
        .open()
        .unwrap();
    let t = raw.open_tree("events").unwrap();
    let raw_base = dir_bytes(&raw_path);
    let mut b = sled::Batch::default();
    for n in 0..events {
        let mut key = format!("h{}", n % 100).into_bytes();
        key.push(0xFF);
        key.extend_from_slice(&(n as u64).to_be_bytes());
        b.insert(key, vec![7u8; 24]);
        if n % 100 == 99 {
            t.apply_batch(std::mem::take(&mut b)).unwrap();
        }
    }
    raw.flush().unwrap();
    drop(t);
    drop(raw);
    let raw_bytes = dir_bytes(&raw_path) - raw_base;
    let (per_ours, per_raw) = (
        ours as f64 / events as f64,
        raw_bytes as f64 / events as f64,
    );
    println!(
        "disk per interaction, {events} events over 100 users (batches of 100, {:.0} events/s): ours {per_ours:.1} B, raw per-event keys {per_raw:.1} B ({:.2}x); encoded event 24 B",
        events as f64 / stream_secs,
        per_ours / per_raw
    );
    report.insert(
        "disk".into(),
        json!({"events": events, "bytes_per_event": per_ours, "raw_bytes_per_event": per_raw,
               "ratio": per_ours / per_raw, "encoded_event": 24, "events_per_s": events as f64 / stream_secs}),
    );
    let out =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-history-writes.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("wrote {}", out.display());
}
