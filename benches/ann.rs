//! ANN figures: build time, queries/s against recall@10 over a sweep of ef_search (one query
//! thread), reload vs rebuild time, and resident memory per vector, on a seeded Gaussian mixture
//! of normalised vectors. The vectors, queries and exact top-10 are written to
//! `.cache/ann-bench/<n>x<dim>.*` so that `scripts/ann_hnswlib.py` measures the Python hnswlib
//! package on the very same data (`scripts/bench-ann` runs both and prints the ratios).
//!
//! `cargo bench --bench ann -- --n 100000 --dim 128 [--m 16] [--ef-construction 200]
//! [--efs 10,16,...] [--rounds 1]` writes `.cache/ann-bench/<n>x<dim>.convergedb.json`
//! (`--rounds`: timed passes over the queries per ef_search, the best one kept).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use convergedb::{Config, Item};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

const QUERIES: usize = 1000;
const K: usize = 10;
const EFS: [usize; 9] = [10, 16, 24, 32, 48, 64, 96, 128, 256];

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|p| args.get(p + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n = arg(&args, "--n", 100_000);
    let dim = arg(&args, "--dim", 128);
    let m = arg(&args, "--m", 16);
    let ef_c = arg(&args, "--ef-construction", 200);
    let rounds = arg(&args, "--rounds", 1).max(1);
    let efs: Vec<usize> = args
        .iter()
        .position(|a| a == "--efs")
        .and_then(|p| args.get(p + 1))
        .map(|v| v.split(',').filter_map(|e| e.parse().ok()).collect())
        .unwrap_or_else(|| EFS.to_vec());
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/ann-bench");
    fs::create_dir_all(&out)?;
    let stem = out.join(format!("{n}x{dim}"));

    let (base, queries) = data(n, dim);
    write_f32(&stem.with_extension("base.f32"), &base, dim)?;
    write_f32(&stem.with_extension("query.f32"), &queries, dim)?;
    let t = Instant::now();
    let truth = exact(&base, &queries, dim);
    eprintln!(
        "exact top-{K} of {QUERIES} queries in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut f = fs::File::create(stem.with_extension("truth.u32"))?;
    for row in &truth {
        for id in row {
            f.write_all(&(*id as u32).to_le_bytes())?;
        }
    }

    let work = tempfile::tempdir_in(&out)?;
    let config = || {
        Config::new(work.path())
            .ann_max_nb_connection(m)
            .ann_ef_construction(ef_c)
            .max_batch(n.max(1))
    };
    let db = config().open()?;
    let t = Instant::now();
    for (c, chunk) in base.chunks(dim * 10_000).enumerate() {
        let items: Vec<Item> = chunk
            .chunks(dim)
            .enumerate()
            .map(|(i, v)| Item::new((c * 10_000 + i).to_string()).vector("v", v.to_vec()))
            .collect();
        db.put_items(&items)?;
    }
    eprintln!("stored {n} vectors in {:.1} s", t.elapsed().as_secs_f64());
    let rss_before = rss_bytes();
    let t = Instant::now();
    let info = db.build_ann("v")?;
    let build_s = t.elapsed().as_secs_f64();
    let rss_after = rss_bytes();
    eprintln!("built in {build_s:.1} s: {info:?}");

    // (recall, queries per wall second, queries per CPU second of this thread). The CPU figure
    // is what the query thread itself spent: steadier than wall time on a shared machine.
    let sweep = |db: &convergedb::Db| -> Result<(f64, f64, f64), convergedb::Error> {
        let cpu = thread_cpu_s();
        let t = Instant::now();
        let mut hits = 0usize;
        for (qi, q) in queries.chunks(dim).enumerate() {
            let found = db.recommend_by_vector("v", q, K)?;
            hits += found
                .iter()
                .filter(|s| truth[qi].contains(&s.key.parse::<usize>().unwrap_or(usize::MAX)))
                .count();
        }
        let secs = t.elapsed().as_secs_f64();
        let cpu = thread_cpu_s() - cpu;
        let q = QUERIES as f64;
        Ok((hits as f64 / (QUERIES * K) as f64, q / secs, q / cpu))
    };
    drop(db);
    let mut rows = Vec::new();
    for ef in efs {
        let db = config().ann_ef_search(ef).open()?;
        sweep(&db)?; // warm up
        let (mut recall, mut qps, mut cpu_qps) = (0.0, 0.0f64, 0.0f64);
        for _ in 0..rounds {
            let (r, q, c) = sweep(&db)?;
            (recall, qps, cpu_qps) = (r, qps.max(q), cpu_qps.max(c));
        }
        eprintln!(
            "ef_search {ef:>4}: recall@{K} {recall:.4}, {qps:>8.0} queries/s, \
             {cpu_qps:>8.0} per CPU second"
        );
        rows.push(json!({"ef_search": ef, "recall": recall, "qps": qps, "cpu_qps": cpu_qps}));
    }
    // Reload: open with the dump, minus an open of the same store without an index.
    let t = Instant::now();
    let db = config().open()?;
    let open_with_index_s = t.elapsed().as_secs_f64();
    let origin = format!("{:?}", db.stats()?.ann[0].origin);
    db.drop_ann("v")?;
    drop(db);
    let t = Instant::now();
    let db = config().open()?;
    let open_plain_s = t.elapsed().as_secs_f64();
    drop(db);
    let reload_s = open_with_index_s - open_plain_s;
    let links = 2 * m * 4;
    let per_vector = (rss_after.saturating_sub(rss_before)) as f64 / n as f64;
    let index_per_vector = info.memory_bytes as f64 / n as f64;
    let report = json!({
        "engine": "convergedb",
        "n": n, "dim": dim, "m": m, "ef_construction": ef_c, "k": K, "queries": QUERIES,
        "build_s": build_s,
        "reload_s": reload_s,
        "reload_origin": origin,
        "open_with_index_s": open_with_index_s,
        "open_without_index_s": open_plain_s,
        "rss_per_vector_bytes": per_vector,
        "index_bytes_per_vector": index_per_vector,
        "reference_bytes_per_vector": 4 * dim + links,
        "rounds": rounds,
        "default_ef_search": convergedb::AnnParams::default().ef_search,
        "sweep": rows,
    });
    let path = stem.with_extension("convergedb.json");
    fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Normalised vectors around 100 centres, and queries from the same mixture (seeded).
fn data(n: usize, dim: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let centres: Vec<f32> = (0..100 * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let mut draw = |count: usize| {
        let mut out = Vec::with_capacity(count * dim);
        for _ in 0..count {
            let c = rng.gen_range(0..100);
            let start = out.len();
            for j in 0..dim {
                out.push(centres[c * dim + j] + rng.gen_range(-0.5f32..0.5));
            }
            let v = &mut out[start..];
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
        }
        out
    };
    let base = draw(n);
    let queries = draw(QUERIES);
    (base, queries)
}

/// Exact top-K by inner product (the vectors are unit length), two threads.
fn exact(base: &[f32], queries: &[f32], dim: usize) -> Vec<Vec<usize>> {
    let qs: Vec<&[f32]> = queries.chunks(dim).collect();
    let half = qs.len() / 2;
    let run = |part: &[&[f32]]| -> Vec<Vec<usize>> {
        part.iter()
            .map(|q| {
                let mut best: Vec<(f32, usize)> = Vec::with_capacity(K + 1);
                for (i, v) in base.chunks(dim).enumerate() {
                    let s: f32 = v.iter().zip(q.iter()).map(|(a, b)| a * b).sum();
                    if best.len() < K || s > best[K - 1].0 {
                        let pos = best.partition_point(|b| b.0 >= s);
                        best.insert(pos, (s, i));
                        best.truncate(K);
                    }
                }
                best.into_iter().map(|(_, i)| i).collect()
            })
            .collect()
    };
    std::thread::scope(|s| {
        let a = s.spawn(|| run(&qs[..half]));
        let mut b = run(&qs[half..]);
        let mut all = a.join().unwrap_or_default();
        all.append(&mut b);
        all
    })
}

/// `[n: u32 LE][dim: u32 LE][f32 LE × n·dim]`.
fn write_f32(path: &Path, values: &[f32], dim: usize) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(fs::File::create(path)?);
    f.write_all(&((values.len() / dim) as u32).to_le_bytes())?;
    f.write_all(&(dim as u32).to_le_bytes())?;
    for v in values {
        f.write_all(&v.to_le_bytes())?;
    }
    f.flush()
}

/// CPU time of the calling thread, in seconds (`/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu_s() -> f64 {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 * 1e-9)
}

fn rss_bytes() -> u64 {
    fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}
