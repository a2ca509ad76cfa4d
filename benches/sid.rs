//! Tokenization figures (issue: Alignment Tokenization): time to tokenize 10k and 100k items at
//! d = 64 and 384 (train + assign + store, through `Db::tokenize`), assignment throughput for
//! new items (`put_items` of one item with the tokenized vector, which assigns codes in its
//! transaction, against the same put under a vector name no tokenization reads), `allowed_next` latency through the `Db`, trie
//! memory per item, and collision rates with and without the balanced last level.
//! Run: `cargo bench --bench sid` (synthetic data; set SID_BENCH_QUICK=1 for 10k only).
//! Writes target/bench-sid.json.

use std::time::{Duration, Instant};

use convergedb::{Config, Db, Item, TokenizeOptions};
use serde_json::json;

/// Clustered synthetic vectors: 1,000 random centres plus noise (deterministic).
fn vectors(n: usize, dim: usize) -> Vec<Vec<f32>> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let centres: Vec<Vec<f32>> = (0..1000)
        .map(|_| (0..dim).map(|_| next() * 4.0).collect())
        .collect();
    (0..n)
        .map(|i| {
            centres[(i * 7919) % 1000]
                .iter()
                .map(|c| c + next() * 0.5)
                .collect()
        })
        .collect()
}

fn load(db: &Db, vs: &[Vec<f32>]) -> Result<(), convergedb::Error> {
    for (chunk_no, chunk) in vs.chunks(20_000).enumerate() {
        let items: Vec<Item> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| Item::new(format!("i{}", chunk_no * 20_000 + i)).vector("v", v.clone()))
            .collect();
        db.put_items(&items)?;
    }
    Ok(())
}

fn pct(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let quick = std::env::var_os("SID_BENCH_QUICK").is_some();
    let sizes: &[usize] = if quick { &[10_000] } else { &[10_000, 100_000] };
    let mut rows = Vec::new();
    println!(
        "{:>8} {:>5} {:>9} {:>12} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "items",
        "dim",
        "balanced",
        "tokenize s",
        "collide",
        "tuples",
        "trie B/it",
        "assign us",
        "put-only us"
    );
    for &n in sizes {
        for dim in [64usize, 384] {
            let vs = vectors(n, dim);
            for balanced in [false, true] {
                let dir = tempfile::tempdir()?;
                let db = Config::new(dir.path()).open()?;
                load(&db, &vs)?;
                let mut opts = TokenizeOptions::new("v");
                opts.balance_last_level = balanced;
                opts.threads = 2;
                let started = Instant::now();
                db.tokenize(&opts, None)?;
                let tokenize_s = started.elapsed().as_secs_f64();
                let stats = db.sid_stats()?;

                // New items: one put per item; the put assigns codes in its transaction.
                let fresh = vectors(500, dim);
                let mut with_sid = Vec::new();
                for (i, v) in fresh.iter().enumerate() {
                    let item = Item::new(format!("new{i}")).vector("v", v.clone());
                    let t = Instant::now();
                    db.put_items(&[item])?;
                    with_sid.push(t.elapsed());
                }
                // Baseline: the same puts into the same database under another vector name,
                // which no tokenization reads (same record sizes, no assignment).
                let mut without = Vec::new();
                for (i, v) in fresh.iter().enumerate() {
                    let item = Item::new(format!("plain{i}")).vector("w", v.clone());
                    let t = Instant::now();
                    db.put_items(&[item])?;
                    without.push(t.elapsed());
                }
                let (assign_p50, _) = pct(with_sid);
                let (put_p50, _) = pct(without);
                // The assignment computation alone (prepared codebooks, no storage).
                let mut quantize = Vec::new();
                for v in &fresh {
                    let t = Instant::now();
                    std::hint::black_box(db.quantize(v)?);
                    quantize.push(t.elapsed());
                }
                let (quantize_p50, _) = pct(quantize);

                // allowed_next through the Db at the root and at depth 3.
                let sample: Vec<Vec<u16>> = (0..200)
                    .filter_map(|i| db.sid(&format!("i{}", i * (n / 200))).ok().flatten())
                    .collect();
                let mut root = Vec::new();
                let mut deep = Vec::new();
                for round in 0..50 {
                    for c in &sample {
                        let t = Instant::now();
                        std::hint::black_box(db.allowed_next(&[]));
                        root.push(t.elapsed());
                        let t = Instant::now();
                        std::hint::black_box(db.allowed_next(&c[..3]));
                        deep.push(t.elapsed());
                        std::hint::black_box(round);
                    }
                }
                let (root_p50, root_p99) = pct(root);
                let (deep_p50, deep_p99) = pct(deep);
                let trie_per_item = stats.trie_bytes as f64 / stats.items_with_codes as f64;
                println!(
                    "{n:>8} {dim:>5} {balanced:>9} {tokenize_s:>11.2} {:>8.4} {:>7} {trie_per_item:>9.1} {quantize_p50:>11.1} {assign_p50:>11.1} {put_p50:>11.1}",
                    stats.collision_rate, stats.distinct_tuples
                );
                rows.push(json!({
                    "items": n, "dim": dim, "balanced": balanced, "tokenize_s": tokenize_s,
                    "collision_rate": stats.collision_rate, "distinct_tuples": stats.distinct_tuples,
                    "mean_relative_error": stats.mean_relative_error,
                    "trie_bytes_per_item": trie_per_item,
                    "put_with_assignment_p50_us": assign_p50, "quantize_p50_us": quantize_p50, "put_without_tokenization_p50_us": put_p50,
                    "allowed_next_root_us": {"p50": root_p50, "p99": root_p99},
                    "allowed_next_depth3_us": {"p50": deep_p50, "p99": deep_p99},
                }));
            }
        }
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-sid.json");
    std::fs::write(&path, serde_json::to_string_pretty(&rows)?)?;
    println!("allowed_next latencies are in {}", path.display());
    Ok(())
}
