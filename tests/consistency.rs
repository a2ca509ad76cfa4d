//! Goal: the derived state never drifts: every public call agrees with the reference model
//! (`convergedb::fuzzing::model`) and `check()` stays clean after every op, across flushes and
//! reopens; the C API survives arbitrary call sequences; every decoder survives arbitrary bytes.
//! Method: the harnesses of the `ops`, `ffi` and `decode` fuzz targets, fed from a seeded RNG
//! through `arbitrary::Unstructured` (bounded: a few thousand ops), plus a replay of every input
//! in `fuzz/regressions/<target>/` (every input that ever failed goes there).
//! Long mode: `CONVERGEDB_CONSISTENCY_OPS=<n>` runs seeds until n ops (see docs/testing.md).

use std::path::{Path, PathBuf};
use std::time::Instant;

use convergedb::fuzzing::{self, ops};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Ops per seed in the bounded run: long enough for tokenize, evictions and revivals to meet.
const OPS_PER_SEED: usize = 400;
const SEEDS: u64 = 8;

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

fn run_seed(parent: &Path, seed: u64, ops_per_seed: usize, all: &mut ops::Outcomes) -> usize {
    // About 12 bytes per op; more than enough so that the sequence ends by count.
    let data = bytes(seed, ops_per_seed * 64);
    match ops::run_bytes_counted(parent, &data, ops_per_seed) {
        Ok((n, outcomes)) => {
            ops::add_outcomes(all, outcomes);
            n
        }
        Err(e) => {
            let path = std::env::temp_dir().join(format!("convergedb-ops-seed-{seed}.bin"));
            let _ = std::fs::write(&path, &data);
            panic!(
                "seed {seed}: {e}\n(input saved to {}: copy it into fuzz/regressions/ops/ \
                 and shorten it with `cargo fuzz tmin ops`)",
                path.display()
            )
        }
    }
}

#[test]
fn ops_agree_with_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let (total, first_seed) = match std::env::var("CONVERGEDB_CONSISTENCY_OPS") {
        Ok(n) => (
            n.parse::<u64>()
                .expect("CONVERGEDB_CONSISTENCY_OPS is a number"),
            None,
        ),
        Err(_) => (SEEDS * OPS_PER_SEED as u64, Some(0)),
    };
    // Long mode: seeds start at CONVERGEDB_CONSISTENCY_SEED (default: from the clock), so that
    // parallel campaigns cover different sequences; each seed is printed when it fails.
    let mut seed = first_seed.unwrap_or_else(|| {
        std::env::var("CONVERGEDB_CONSISTENCY_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            })
    });
    let start = Instant::now();
    let mut done = 0u64;
    let mut last_report = Instant::now();
    let mut outcomes = ops::Outcomes::new();
    while done < total {
        let n = run_seed(dir.path(), seed, OPS_PER_SEED, &mut outcomes) as u64;
        assert_eq!(n, OPS_PER_SEED as u64, "seed {seed}: the input ran out");
        done += n;
        seed += 1;
        if first_seed.is_none() && last_report.elapsed().as_secs() >= 60 {
            last_report = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            println!(
                "consistency: {done} ops, seeds up to {seed}, {secs:.0} s, {:.0} ops/s",
                done as f64 / secs
            );
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "consistency: {done} ops in {secs:.1} s ({:.0} ops/s), last seed {}",
        done as f64 / secs,
        seed - 1
    );
    println!("consistency: (succeeded, rejected) per call: {outcomes:?}");
    // The sequences must reach both outcomes of every write, or the comparison proves little.
    for call in [
        "put",
        "insert",
        "delete",
        "put_vectors",
        "record_interactions",
        "tokenize",
    ] {
        let (ok, err) = outcomes.get(call).copied().unwrap_or_default();
        assert!(ok > 0 && err > 0, "{call}: {ok} succeeded, {err} rejected");
    }
    assert!(
        outcomes.get("reopen").is_some_and(|r| r.0 > 0),
        "no reopen ran"
    );
}

fn regressions(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_ops_regression_replays_clean() {
    let dir = tempfile::tempdir().unwrap();
    let files = regressions("ops");
    for path in files {
        let data = std::fs::read(&path).unwrap();
        if let Err(e) = ops::run_bytes(dir.path(), &data, usize::MAX) {
            panic!("{}: {e}", path.display());
        }
    }
}

#[test]
fn ffi_call_sequences_follow_the_rules() {
    for seed in 0..24 {
        let dir = tempfile::tempdir().unwrap();
        let data = bytes(1_000 + seed, 2048);
        if let Err(e) = fuzzing::ffi::run_bytes(dir.path(), &data, 100) {
            panic!("ffi seed {seed}: {e}");
        }
    }
    let tally = fuzzing::ffi::take_tally();
    println!("ffi: (call, status) counts: {tally:#?}");
    // The sequences must reach the success path of the main calls, and their error paths.
    for call in [
        "open",
        "item_put",
        "items_put_jsonl",
        "interaction_record",
        "recommend",
        "tokenize",
        "sid",
        "allowed_next",
        "history_json",
        "check",
    ] {
        assert!(
            tally.contains_key(&format!("{call} CONVERGEDB_OK")),
            "{call}: never OK"
        );
        assert!(
            tally
                .keys()
                .any(|k| k.starts_with(&format!("{call} ")) && !k.ends_with(" CONVERGEDB_OK")),
            "{call}: never failed"
        );
    }
    for path in regressions("ffi") {
        let dir = tempfile::tempdir().unwrap();
        let data = std::fs::read(&path).unwrap();
        if let Err(e) = fuzzing::ffi::run_bytes(dir.path(), &data, usize::MAX) {
            panic!("{}: {e}", path.display());
        }
    }
}

#[test]
fn decoders_survive_random_bytes_and_regressions() {
    for seed in 0..2_000u64 {
        let len = (seed % 97) as usize;
        let data = bytes(50_000 + seed, len);
        fuzzing::decode_records(&data);
        fuzzing::decode_tokenization_file(&data);
        fuzzing::decode_bundle_manifest(&data);
        fuzzing::decode_ann_dump(&data);
    }
    // Damaged copies of a real bundle manifest: flipped bytes and truncations.
    let manifest = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ml100k/manifest.json"),
    )
    .unwrap();
    for seed in 0..1_000u64 {
        let noise = bytes(90_000 + seed, 8);
        let mut data = manifest.clone();
        if seed % 4 == 0 {
            data.truncate(noise[0] as usize * data.len() / 256);
        } else {
            for pair in noise.chunks(2) {
                let at = (pair[0] as usize * 7919 + seed as usize * 31) % data.len();
                data[at] = pair[1];
            }
        }
        fuzzing::decode_bundle_manifest(&data);
    }
    for path in regressions("decode") {
        let data = std::fs::read(&path).unwrap();
        fuzzing::decode_records(&data);
        fuzzing::decode_tokenization_file(&data);
        fuzzing::decode_bundle_manifest(&data);
    }
}
