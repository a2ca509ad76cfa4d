//! Goal: damaged database files (sled's `db`, `conf`, `blobs/`, `snap.*`) never make convergedb
//! panic, hang or silently return wrong data: opening and reading everything either fails with
//! an error (or `check()` reports the damage), or shows exactly the state after some prefix of
//! the writes that were made (sled recovers a log up to its last intact write).
//! Method: a source database is written by a seeded op sequence, flushed after every op, with
//! the reference model's state recorded after each op. Each case copies it, flips bits,
//! truncates a file or overwrites a range at random, then opens it in a child process (sled may
//! abort the process), reads everything and runs `check()`; the parent watches each case with a
//! timeout. 60 cases; `CONVERGEDB_CORRUPTION_CASES=<n>` (and `CONVERGEDB_CORRUPTION_SEED`) for a
//! campaign.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use convergedb::fuzzing::model::Model;
use convergedb::fuzzing::ops::{self, Harness, Op};
use convergedb::{Durability, Item};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SOURCE_OPS: u64 = 40;
const SOURCE_SEED: u64 = 7;
const CASE_TIMEOUT: Duration = Duration::from_secs(60);
const CHILD_ENV: &str = "CONVERGEDB_CORRUPTION_CHILD";
const BIG: &str = "big";

/// The ops that write the source database: a large item (sled stores it as a blob), then
/// seeded random ops.
fn source_ops() -> Vec<Op> {
    // Over sled's blob threshold (a quarter of its 512 KiB segment), under a key the random ops
    // never touch.
    let big = Item::new(BIG)
        .title("T".repeat(65_000))
        .description("D".repeat(65_000))
        .attribute("notes", "N".repeat(60_000));
    let mut list = vec![Op::Put {
        items: vec![big],
        insert_only: false,
    }];
    list.extend((0..SOURCE_OPS).map(|i| ops::seeded_op(SOURCE_SEED, i)));
    list
}

/// The model after each prefix of `source_ops()` (index 0: empty).
fn snapshots() -> Vec<Model> {
    let mut model = Model::new(ops::limits());
    let mut out = vec![model.clone()];
    for op in source_ops() {
        ops::apply_to_model(&mut model, &op);
        out.push(model.clone());
    }
    out
}

fn write_source(dir: &Path) {
    let mut h = Harness::new(dir, Durability::default()).unwrap();
    for op in source_ops() {
        h.step(&op).unwrap();
        h.db().flush().unwrap();
    }
    h.close().unwrap();
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Damages one file of `dir` at random; returns what was done.
fn corrupt(dir: &Path, rng: &mut ChaCha8Rng) -> String {
    let all = files(dir);
    // Mostly sled's main file, where the data is.
    let path = match all
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == "db"))
    {
        Some(db) if rng.gen_ratio(7, 10) => db.clone(),
        _ => all[rng.gen_range(0..all.len())].clone(),
    };
    let mut bytes = std::fs::read(&path).unwrap();
    let name = path.strip_prefix(dir).unwrap().display().to_string();
    if bytes.is_empty() {
        return format!("{name}: empty, left alone");
    }
    let len = bytes.len();
    let what = match rng.gen_range(0..4) {
        0 => {
            let n = rng.gen_range(1..=8);
            for _ in 0..n {
                let at = rng.gen_range(0..len);
                bytes[at] ^= 1 << rng.gen_range(0..8);
            }
            format!("{name}: {n} bit flips")
        }
        1 => {
            let keep = rng.gen_range(0..len);
            bytes.truncate(keep);
            format!("{name}: truncated from {len} to {keep} bytes")
        }
        2 => {
            let at = rng.gen_range(0..len);
            let n = rng.gen_range(1..=4096).min(len - at);
            bytes[at..at + n].fill(0);
            format!("{name}: {n} bytes zeroed at {at}")
        }
        _ => {
            let at = rng.gen_range(0..len);
            let n = rng.gen_range(1..=64).min(len - at);
            rng.fill(&mut bytes[at..at + n]);
            format!("{name}: {n} random bytes at {at}")
        }
    };
    std::fs::write(&path, bytes).unwrap();
    what
}

/// Opens a damaged copy and classifies the result; `Err` is a broken promise.
fn verify(dir: &Path, snaps: &[Model]) -> Result<String, String> {
    let mut h = match Harness::attach(dir, Durability::default(), snaps[0].clone()) {
        Ok(h) => h,
        Err(e) => return Ok(format!("open error ({})", short(&e))),
    };
    // Read everything once: an error from any read is an honest answer.
    if let Err(e) = read_everything(h.db()) {
        return Ok(format!("read error ({})", first_word(&e)));
    }
    match h.db().check() {
        Err(e) => return Ok(format!("check error ({})", first_word(&e.to_string()))),
        Ok(r) if !r.is_clean() => return Ok("check reports damage".into()),
        Ok(_) => {}
    }
    let last = snaps.len() - 1;
    let mut full_diff = String::new();
    for k in (0..=last).rev() {
        h.model = snaps[k].clone();
        let big = h.db().get_item(BIG).map_err(|e| e.to_string());
        match h.compare().and_then(|()| {
            if big == Ok(h.model.get_item(BIG).unwrap()) {
                Ok(())
            } else {
                Err(format!("get_item({BIG:?}) differs"))
            }
        }) {
            Ok(()) if k == last => return Ok("recovered: all writes".into()),
            Ok(()) => return Ok(format!("recovered: prefix of {k}/{last} writes")),
            Err(e) if k == last => full_diff = e,
            Err(_) => {}
        }
    }
    Err(format!(
        "reads succeed and check() is clean, but the state is no prefix of the writes: {full_diff}"
    ))
}

fn first_word(e: &str) -> String {
    e.split([':', '(', '{', ' '])
        .find(|w| !w.is_empty() && *w != "open")
        .unwrap_or("")
        .to_string()
}

/// The error's message up to its first detail (paths, offsets and keys vary per case).
fn short(e: &str) -> String {
    let e = e.strip_prefix("open: ").unwrap_or(e);
    e.chars()
        .take_while(|c| !c.is_ascii_digit() && *c != '"')
        .take(70)
        .collect()
}

fn read_everything(db: &convergedb::Db) -> Result<(), String> {
    let s = |e: convergedb::Error| e.to_string();
    db.stats().map_err(s)?;
    for u in db.users() {
        let u = u.map_err(s)?;
        db.history(&u).map_err(s)?;
    }
    db.get_item(BIG).map_err(s)?;
    for key in ops::ITEM_KEYS {
        db.get_item(key).map_err(s)?;
        db.sid(key).map_err(s)?;
    }
    for user in ops::USERS {
        match db.history(user) {
            Ok(_) | Err(convergedb::Error::UnknownUser { .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
        db.recommend(user, 100).map_err(s)?;
    }
    Ok(())
}

/// The child: runs cases `from..to` on copies of the source, printing one line per case.
#[test]
fn corruption_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split(',');
    let (root, seed, from, to) = (
        PathBuf::from(parts.next().unwrap()),
        parts.next().unwrap().parse::<u64>().unwrap(),
        parts.next().unwrap().parse::<u64>().unwrap(),
        parts.next().unwrap().parse::<u64>().unwrap(),
    );
    let snaps = snapshots();
    for case in from..to {
        let dir = root.join(format!("case-{case}"));
        copy_dir(&root.join("source"), &dir);
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(case));
        let what = corrupt(&dir, &mut rng);
        println!("start {case} {what}");
        let verdict = verify(&dir, &snaps);
        let _ = std::fs::remove_dir_all(&dir);
        match verdict {
            Ok(outcome) => println!("done {case} {outcome}\t{what}"),
            Err(e) => println!("WRONG {case} {what}: {e}"),
        }
    }
}

#[test]
fn damaged_files_give_errors_or_a_consistent_prefix() {
    let cases: u64 = std::env::var("CONVERGEDB_CORRUPTION_CASES")
        .ok()
        .map_or(60, |n| {
            n.parse().expect("CONVERGEDB_CORRUPTION_CASES is a number")
        });
    let seed: u64 = std::env::var("CONVERGEDB_CORRUPTION_SEED")
        .ok()
        .map_or(1, |n| {
            n.parse().expect("CONVERGEDB_CORRUPTION_SEED is a number")
        });
    let root = common::tempdir();
    write_source(&root.path().join("source"));
    // The untouched source must read back as every write.
    assert_eq!(
        verify(&root.path().join("source"), &snapshots()),
        Ok("recovered: all writes".to_string())
    );

    // Outcome -> (cases, the damage of one of them).
    let listing: Vec<String> = files(&root.path().join("source"))
        .iter()
        .map(|p| {
            let name = p.strip_prefix(root.path().join("source")).unwrap();
            format!("{} ({} bytes)", name.display(), p.metadata().unwrap().len())
        })
        .collect();
    println!("corruption: source files {listing:?}");
    let mut outcomes: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut next = 0;
    while next < cases {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "corruption_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(
                CHILD_ENV,
                format!("{},{seed},{next},{cases}", root.path().display()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // stderr is read from the start (a child must not block on a full pipe) and must stay
        // free of panic messages: sled's recovery panics are caught without printing.
        let mut stderr = child.stderr.take().unwrap();
        let mut err_reader = Some(std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        }));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        let mut current: Option<String> = None;
        loop {
            match rx.recv_timeout(CASE_TIMEOUT) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("start ") {
                        current = Some(rest.to_string());
                    } else if let Some(rest) = line.strip_prefix("done ") {
                        let (case, outcome) = rest.split_once(' ').unwrap();
                        let (outcome, what) = outcome.split_once('\t').unwrap();
                        let e = outcomes.entry(outcome.to_string()).or_default();
                        e.0 += 1;
                        e.1 = what.to_string();
                        next = case.parse::<u64>().unwrap() + 1;
                        current = None;
                    } else if let Some(rest) = line.strip_prefix("WRONG ") {
                        failures.push(format!("wrong data: {rest}"));
                        let case = rest.split(' ').next().unwrap();
                        next = case.parse::<u64>().unwrap() + 1;
                        current = None;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    failures.push(format!("hang (over {CASE_TIMEOUT:?}): {current:?}"));
                    next += 1;
                    break;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if let Some(case) = current.take() {
                        let _ = child.wait();
                        let err = err_reader
                            .take()
                            .map(|r| r.join().unwrap_or_default())
                            .unwrap_or_default();
                        let tail: String = err.chars().rev().take(1500).collect();
                        let tail: String = tail.chars().rev().collect();
                        failures.push(format!("the process died in case {case}: {tail}"));
                        next += 1;
                    }
                    break;
                }
            }
        }
        let _ = child.wait();
        if let Some(r) = err_reader.take() {
            let err = r.join().unwrap_or_default();
            if err.contains("panicked") {
                let head: String = err.chars().take(1500).collect();
                failures.push(format!("a panic message reached stderr: {head}"));
            }
        }
    }
    println!("corruption: {cases} cases, outcomes {outcomes:#?}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(outcomes.values().map(|o| o.0).sum::<u64>(), cases);
}
