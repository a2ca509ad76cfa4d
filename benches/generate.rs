//! Generation throughput with the shipped ML-100K bundle, against the Python onnxruntime
//! reference (`training/convergedb_train/serve_ref.py`) run by this bench on the same model, the
//! same users and the same machine.
//!
//! `cargo bench --bench generate` (needs ONNX Runtime: `./scripts/setup-ort`; the Python side
//! needs the training venv: `./scripts/bench-generate` sets both up). Writes
//! `target/bench-generate.json`.
//!
//! Measured per configuration (the shipped format-2 bundle, shared-prefix decoding, and, with
//! `CONVERGEDB_BENCH_V1_BUNDLE`, the same weights as a format-1 bundle, a KV cache per beam;
//! batch 1/4/16/64 with the cache, 16 without): users/s through `Db::generate_batch` (history
//! read, prompt, tokenization, constrained beam search, ONNX Runtime), the share of that time
//! inside ONNX Runtime, the peak RSS of the run; two sessions on two threads (the whole
//! machine); and the Python reference's users/s (format 1 with its per-beam cache: the
//! baseline of the ratio; format 2 shared-prefix for comparison). One intra-op thread per
//! session on both sides (one session per worker is the serving model).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use convergedb::import::{self, ImportOptions};
use convergedb::{Config, Interaction, ModelOptions};
use serde_json::{json, Value};

const BEAM: usize = 20;
const K: usize = 10;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bundle = root().join("models/ml100k");
    let tv: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("test_vectors.json"))?)?;
    let cases = tv["recommendations"]
        .as_array()
        .ok_or("no recommendations in test_vectors.json")?;
    let tmp = tempfile::tempdir()?;
    // No refresh workers: attaching would queue every user and a background worker would
    // generate (and count time) beside the measured calls.
    let db = Config::new(tmp.path().join("db"))
        .refresh_workers(0)
        .open()?;
    import::items_jsonl(&db, &bundle.join("items.jsonl"), &ImportOptions::default())?;
    db.import_tokenization(&bundle.join("tokenization.json"))?;
    let mut events = Vec::new();
    let mut users = Vec::new();
    for c in cases {
        let user = c["user"].as_str().ok_or("user")?.to_string();
        for (t, item) in c["history"].as_array().ok_or("history")?.iter().enumerate() {
            events.push(Interaction::new(
                user.clone(),
                item.as_str().ok_or("item")?,
                t as i64,
            ));
        }
        users.push(user);
    }
    db.record_interactions(&events)?;
    // 256 users: the 200 parity users, then again from the start.
    let users: Vec<&str> = users.iter().map(String::as_str).cycle().take(256).collect();
    let hwm_before = vm_hwm_kib();

    // The old decoding on the same weights: a format-1 bundle re-exported from the shipped one
    // (`./scripts/bench-generate` makes it with `convergedb_train.reexport --format 1`).
    let v1 = std::env::var_os("CONVERGEDB_BENCH_V1_BUNDLE").map(PathBuf::from);
    let mut bundles = vec![("v2", bundle.clone())];
    if let Some(v1) = &v1 {
        bundles.push(("v1", v1.clone()));
    }
    let mut rust = serde_json::Map::new();
    let mut rss = serde_json::Map::new();
    for (tag, dir) in &bundles {
        for (kv, batches) in [(true, &[1usize, 4, 16, 64][..]), (false, &[16][..])] {
            for &batch in batches {
                let name = format!("{tag}_batch{batch}_{}", if kv { "kv" } else { "nokv" });
                let opts = ModelOptions::new()
                    .provider(provider())
                    .beam_width(BEAM)
                    .kv_cache(kv)
                    .max_batch(batch)
                    .intra_threads(1);
                db.attach_model(dir, opts)?;
                let n = if batch == 1 { 64 } else { users.len() };
                db.generate_batch(&users[..batch], K)?; // warm-up
                reset_hwm();
                let rss_before = vm_hwm_kib();
                let before = db.model_info().ok_or("model")?;
                let started = Instant::now();
                for chunk in users[..n].chunks(batch) {
                    db.generate_batch(chunk, K)?;
                }
                let secs = started.elapsed().as_secs_f64();
                let after = db.model_info().ok_or("model")?;
                let peak = vm_hwm_kib();
                let ort = after.ort_seconds - before.ort_seconds;
                let gen = after.generate_seconds - before.generate_seconds;
                println!(
                    "rust   {name:<18} {:>8.1} users/s  {:>7.2} ms/user  ONNX Runtime {:>5.1}% of search+inference, search+copies {:>5.1}%, prompts+reads {:>4.1}% of wall, peak RSS {} MiB",
                    n as f64 / secs,
                    secs * 1e3 / n as f64,
                    100.0 * ort / gen,
                    100.0 * (gen - ort) / gen,
                    100.0 * (secs - gen) / secs,
                    peak / 1024
                );
                rss.insert(
                    name.clone(),
                    json!({"peak_mib": peak / 1024, "before_mib": rss_before / 1024}),
                );
                rust.insert(
                    name,
                    json!({"users_per_second": n as f64 / secs, "ms_per_user": secs * 1e3 / n as f64,
                           "ort_share_of_generation": ort / gen, "search_overhead_vs_ort": (gen - ort) / ort,
                           "outside_generation_share": (secs - gen) / secs, "peak_rss_mib": peak / 1024}),
                );
            }
        }
    }
    let parallel = two_sessions(&db, &bundle, &users)?;

    let python_v1 = v1.as_ref().and_then(|d| python_reference(d, "per_beam"));
    let python_v2 = python_reference(&bundle, "shared_prefix");
    let mut ratios = serde_json::Map::new();
    if let Some(py) = python_v1
        .as_ref()
        .and_then(|p| p["users_per_second"].as_object())
    {
        for (name, ps) in py {
            let Some(ps) = ps.as_f64() else { continue };
            let Some(rs) = rust
                .get(&format!("v2_{name}"))
                .and_then(|r| r["users_per_second"].as_f64())
            else {
                continue;
            };
            println!(
                "python v1 (per-beam cache) {name:<12} {ps:>8.1} users/s  -> rust v2 / python v1 = {:.2}x",
                rs / ps
            );
            ratios.insert(name.clone(), json!(rs / ps));
        }
    }
    // The compute-bound limit: MatMul FLOPs per user counted from a profile of the bundle's
    // graphs, over the GFLOP/s of one ONNX Runtime MatMul timed in the same run.
    let limit = python_module(
        &bundle,
        "convergedb_train.profile",
        &["--users", "64", "--batch", "4", "--threads", "1"],
    )
    .map(|p| p["compute_bound_limit"].clone());
    let mut shares = serde_json::Map::new();
    if let Some(bound) = limit
        .as_ref()
        .and_then(|l| l["compute_bound_users_per_s"].as_f64())
    {
        println!(
            "compute-bound limit (one thread): {bound:.1} users/s ({} MFLOP per user in MatMul/Gemm, MatMul {} GFLOP/s)",
            limit.as_ref().map_or(Value::Null, |l| l["matmul_mflop_per_user"].clone()),
            limit.as_ref().map_or(Value::Null, |l| l["bench_matmul_gflop_s"].clone()),
        );
        for (name, r) in &rust {
            if let Some(ups) = r["users_per_second"].as_f64() {
                if name.starts_with("v2_") && name.ends_with("_kv") {
                    println!(
                        "rust   {name:<18} {:>5.1}% of the compute-bound limit",
                        100.0 * ups / bound
                    );
                    shares.insert(name.clone(), json!(ups / bound));
                }
            }
        }
    }
    let report = json!({
        "compute_bound_limit": limit, "rust_share_of_compute_bound_limit": shares,
        "bundle": bundle, "v1_bundle": v1, "beam_width": BEAM, "k": K, "intra_threads": 1,
        "rust": rust, "rust_two_sessions": parallel, "rss": rss,
        "python_v1_per_beam": python_v1, "python_v2_shared_prefix": python_v2,
        "rust_v2_over_python_v1": ratios, "rss_before_attach_mib": hwm_before / 1024,
    });
    let out = root().join("target/bench-generate.json");
    std::fs::write(&out, serde_json::to_vec_pretty(&report)?)?;
    println!("wrote {}", out.display());
    Ok(())
}

/// `CONVERGEDB_PROVIDER=cuda[:N]` (`./scripts/gpu-check`) or the CPU.
fn provider() -> convergedb::ExecutionProvider {
    match std::env::var("CONVERGEDB_PROVIDER").ok().as_deref() {
        None | Some("") | Some("cpu") => convergedb::ExecutionProvider::Cpu,
        Some(p) => convergedb::ExecutionProvider::Cuda {
            device_id: p
                .strip_prefix("cuda")
                .and_then(|d| d.strip_prefix(':'))
                .and_then(|d| d.parse().ok())
                .unwrap_or(0),
        },
    }
}

/// Resets the process's peak RSS (`VmHWM`) to its current RSS (Linux `clear_refs` 5).
fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Users/s with two threads, each with its own session (one intra-op thread each), at batch
/// 1, 4 and 16: the whole 2-core machine, the way the refresh workers use it.
fn two_sessions(
    db: &convergedb::Db,
    bundle: &Path,
    users: &[&str],
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let mut out = serde_json::Map::new();
    for batch in [1usize, 4, 16] {
        db.attach_model(
            bundle,
            ModelOptions::new()
                .beam_width(BEAM)
                .max_batch(batch)
                .intra_threads(1),
        )?;
        let warm: Vec<&str> = users[..batch].to_vec();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| db.generate_batch(&warm, K));
            }
        });
        let n = users.len();
        let started = Instant::now();
        let results: Vec<_> = std::thread::scope(|s| {
            let halves = [&users[..n / 2], &users[n / 2..]];
            let handles: Vec<_> = halves
                .into_iter()
                .map(|half| {
                    s.spawn(move || -> convergedb::Result<()> {
                        for chunk in half.chunks(batch) {
                            db.generate_batch(chunk, K)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join()).collect()
        });
        for r in results {
            r.map_err(|_| "a generating thread panicked")??;
        }
        let ups = n as f64 / started.elapsed().as_secs_f64();
        println!("rust   v2 two sessions batch{batch:<3} {ups:>8.1} users/s (2 threads x 1 intra-op thread)");
        out.insert(format!("batch{batch}"), json!(ups));
    }
    Ok(serde_json::Value::Object(out))
}

/// Runs serve_ref.py's timing on `bundle` with `strategy` (one intra-op thread, the KV cache);
/// None when the training venv is missing.
fn python_reference(bundle: &Path, strategy: &str) -> Option<Value> {
    python_module(
        bundle,
        "convergedb_train.serve_ref",
        &[
            "--users",
            "256",
            "--batches",
            "1,4,16,64",
            "--threads",
            "1",
            "--strategy",
            strategy,
            "--modes",
            "kv",
        ],
    )
}

/// Runs `python -m MODULE BUNDLE ARGS` in the training venv and parses its JSON output; None
/// (with a message) when the venv is missing or the module fails.
fn python_module(bundle: &Path, module: &str, args: &[&str]) -> Option<Value> {
    let py = root().join(".cache/train-venv/bin/python");
    if !py.exists() {
        println!("{module} skipped: no training venv (./scripts/bench-generate sets it up)");
        return None;
    }
    let out = Command::new(py)
        .current_dir(root().join("training"))
        .args(["-m", module])
        .arg(bundle)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        println!("{module} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}
