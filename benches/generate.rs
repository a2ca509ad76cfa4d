//! Generation throughput with the shipped ML-100K bundle, against the Python onnxruntime
//! reference (`training/convergedb_train/serve_ref.py`) run by this bench on the same model, the
//! same users and the same machine.
//!
//! `cargo bench --bench generate` (needs ONNX Runtime: `./scripts/setup-ort`; the Python side
//! needs the training venv: `./scripts/bench-generate` sets both up). Writes
//! `target/bench-generate.json`.
//!
//! Measured per configuration (KV cache on/off x batch 1/16/64): users/s through
//! `Db::generate_batch` (history read, prompt, tokenization, constrained beam search, ONNX
//! Runtime), the share of that time inside ONNX Runtime, and the same users/s from Python.
//! Both sides use one intra-op thread (one session per worker is the serving model).

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
    let db = Config::new(tmp.path().join("db")).open()?;
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

    let mut rust = serde_json::Map::new();
    let mut hwm_kv = 0;
    for kv in [true, false] {
        for batch in [1usize, 16, 64] {
            db.attach_model(
                &bundle,
                ModelOptions::new()
                    .beam_width(BEAM)
                    .kv_cache(kv)
                    .max_batch(batch)
                    .intra_threads(1),
            )?;
            let n = if batch == 1 { 64 } else { users.len() };
            db.generate_batch(&users[..batch], K)?; // warm-up
            let before = db.model_info().ok_or("model")?;
            let started = Instant::now();
            for chunk in users[..n].chunks(batch) {
                db.generate_batch(chunk, K)?;
            }
            let secs = started.elapsed().as_secs_f64();
            let after = db.model_info().ok_or("model")?;
            let ort = after.ort_seconds - before.ort_seconds;
            let gen = after.generate_seconds - before.generate_seconds;
            let name = format!("batch{batch}_{}", if kv { "kv" } else { "nokv" });
            println!(
                "rust   {name:<12} {:>8.1} users/s  {:>7.2} ms/user  ONNX Runtime {:>5.1}% of search+inference, search+copies {:>5.1}%, prompts+reads {:>4.1}% of wall",
                n as f64 / secs,
                secs * 1e3 / n as f64,
                100.0 * ort / gen,
                100.0 * (gen - ort) / gen,
                100.0 * (secs - gen) / secs
            );
            rust.insert(
                name,
                json!({"users_per_second": n as f64 / secs, "ms_per_user": secs * 1e3 / n as f64,
                       "ort_share_of_generation": ort / gen, "search_overhead_vs_ort": (gen - ort) / ort,
                       "outside_generation_share": (secs - gen) / secs}),
            );
        }
        if kv {
            hwm_kv = vm_hwm_kib();
        }
    }
    let peak_kib = vm_hwm_kib();
    println!(
        "peak RSS (one session): {} MiB after the KV-cache runs, {} MiB after the full re-runs (before attaching: {} MiB)",
        hwm_kv / 1024,
        peak_kib / 1024,
        hwm_before / 1024
    );

    let python = python_reference(&bundle);
    let mut ratios = serde_json::Map::new();
    if let Some(py) = python
        .as_ref()
        .and_then(|p| p["users_per_second"].as_object())
    {
        for (name, r) in &rust {
            if let (Some(rs), Some(ps)) = (
                r["users_per_second"].as_f64(),
                py.get(name).and_then(Value::as_f64),
            ) {
                println!(
                    "python {name:<12} {ps:>8.1} users/s  -> rust / python = {:.2}x",
                    rs / ps
                );
                ratios.insert(name.clone(), json!(rs / ps));
            }
        }
    }
    let kv_speedup: Vec<(String, f64)> = [1, 16, 64]
        .iter()
        .filter_map(|b| {
            let a = rust.get(&format!("batch{b}_kv"))?["users_per_second"].as_f64()?;
            let c = rust.get(&format!("batch{b}_nokv"))?["users_per_second"].as_f64()?;
            Some((format!("batch{b}"), a / c))
        })
        .collect();
    for (b, x) in &kv_speedup {
        println!("KV cache speed-up {b}: {x:.2}x");
    }
    let report = json!({
        "bundle": bundle, "beam_width": BEAM, "k": K, "intra_threads": 1,
        "rust": rust, "python": python, "rust_over_python": ratios,
        "kv_speedup": kv_speedup
            .into_iter()
            .map(|(k, v)| (k, json!(v)))
            .collect::<serde_json::Map<_, _>>(),
        "peak_rss_mib_kv": hwm_kv / 1024, "peak_rss_mib_nokv": peak_kib / 1024, "rss_before_attach_mib": hwm_before / 1024,
    });
    let out = root().join("target/bench-generate.json");
    std::fs::write(&out, serde_json::to_vec_pretty(&report)?)?;
    println!("wrote {}", out.display());
    Ok(())
}

/// Runs serve_ref.py's timing on the same bundle (one intra-op thread); None when the training
/// venv is missing.
fn python_reference(bundle: &Path) -> Option<Value> {
    let py = root().join(".cache/train-venv/bin/python");
    if !py.exists() {
        println!(
            "python reference skipped: no training venv (./scripts/bench-generate sets it up)"
        );
        return None;
    }
    let out = Command::new(py)
        .current_dir(root().join("training"))
        .args(["-m", "convergedb_train.serve_ref"])
        .arg(bundle)
        .args(["--users", "256", "--batches", "1,16,64", "--threads", "1"])
        .output()
        .ok()?;
    if !out.status.success() {
        println!(
            "python reference failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}
