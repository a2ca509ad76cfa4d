//! Goal: nothing acknowledged under `Durability::Sync` is lost when the process is killed
//! (invariant 8), and the files always reopen with `check()` clean.
//! Method: the test re-runs its own binary as a child that records interactions with
//! `Durability::Sync` and prints "ack N" after each call returns; the parent SIGKILLs it after a
//! varying number of acks, reopens the database, and verifies every acknowledged interaction.
//! Limit: sled hands committed batches to the OS quickly even without a flush, so this test
//! proves recovery after a process crash but cannot by itself prove that the Sync flush ran.
//!
//! The crash loop (`random_ops_survive_a_crash_loop`): a child applies random op sequences
//! (`convergedb::fuzzing::ops`, batches of items, vectors, interactions, tokenize) with
//! `Durability::Sync` and appends the number of each acknowledged op to a log file, fsync'd
//! after the call returns; the parent SIGKILLs it 5-50 ms after it opened the database (or,
//! one time in ten, while it is still opening), reopens, and requires the whole observable
//! state to equal the reference model after exactly the acknowledged ops, or after those plus
//! the one op in flight: never a lost acknowledged op, never part of an op. `check()` must be
//! clean. 200 iterations; `CONVERGEDB_CRASH_ITERS=<n>` for a campaign. The same loop with
//! `Durability::Buffered` (100 iterations) may lose acknowledged ops, but must recover exactly
//! the state after some prefix of them.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use convergedb::fuzzing::model::Model;
use convergedb::fuzzing::ops::{self, Harness};
use convergedb::{Config, Durability, Interaction, Item};
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "CONVERGEDB_CRASH_CHILD_DIR";
const ITEMS: usize = 20;

/// The child's body: runs only when the parent sets `CHILD_ENV`.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let db = Config::new(&dir)
        .durability(Durability::Sync)
        .open()
        .unwrap();
    let start = db.stats().unwrap().interactions_recorded as usize;
    for n in start.. {
        let user = format!("u{}", n % 7);
        let item = format!("i{}", n % ITEMS);
        db.record_interactions(&[Interaction::new(user, item, n as i64)])
            .unwrap();
        println!("ack {n}");
    }
}

#[test]
fn sync_writes_survive_sigkill() {
    let dir = common::tempdir();
    {
        let db = Config::new(dir.path()).open().unwrap();
        let items: Vec<Item> = (0..ITEMS).map(|i| Item::new(format!("i{i}"))).collect();
        db.put_items(&items).unwrap();
        db.close().unwrap();
    }
    let mut acked: Vec<usize> = Vec::new();
    for round in 0..12 {
        acked.extend(acks_until_killed::<usize>(
            "crash_child",
            dir.path(),
            &[],
            5 + (round * 37) % 60,
        ));

        let db = common::open(dir.path());
        common::assert_clean(&db);
        for n in &acked {
            let history = db.history(&format!("u{}", n % 7)).unwrap();
            assert!(
                history.entries.iter().any(|e| e.timestamp == *n as i64),
                "round {round}: acknowledged interaction {n} was lost"
            );
        }
        db.close().unwrap();
    }
    assert!(
        acked.len() >= 12 * 5,
        "the child acknowledged too little: {}",
        acked.len()
    );
}

/// Runs the child test `name` on `dir` (with `envs`), collects the number after each "ack " line
/// it prints, and SIGKILLs it after `kill_after` of them.
fn acks_until_killed<T: std::str::FromStr>(
    name: &str,
    dir: &Path,
    envs: &[(&str, String)],
    kill_after: usize,
) -> Vec<T>
where
    T::Err: std::fmt::Debug,
{
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, dir)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ack ") {
            acked.push(n.parse().unwrap());
            if acked.len() == kill_after {
                child.kill().unwrap(); // SIGKILL on Unix
                break;
            }
        }
    }
    child.wait().unwrap();
    acked
}

const MANY_ROUND_ENV: &str = "CONVERGEDB_CRASH_MANY_ROUND";
const WRITERS: usize = 4;

/// The many-writers child: `WRITERS` threads record one interaction per call (Sync, grouped
/// commits), each printing "ack <timestamp>" after its call returns.
#[test]
fn crash_child_many_writers() {
    let (Some(dir), Some(round)) = (
        std::env::var_os(CHILD_ENV),
        std::env::var_os(MANY_ROUND_ENV),
    ) else {
        return;
    };
    let round: i64 = round.to_str().unwrap().parse().unwrap();
    let db = Config::new(&dir)
        .durability(Durability::Sync)
        .open()
        .unwrap();
    let threads: Vec<_> = (0..WRITERS as i64)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    let ts = round * 10_000_000 + t * 1_000_000 + i;
                    let user = format!("w{t}-{}", i % 3);
                    let item = format!("i{}", i as usize % ITEMS);
                    db.record_interactions(&[Interaction::new(user, item, ts)])
                        .unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {ts}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Group commit under SIGKILL: 4 Sync writer threads, killed after a varying number of acks;
/// every acknowledged interaction is in the reopened database (histories long enough to be
/// chunked), and `check()` is clean.
#[test]
fn grouped_sync_writes_of_many_writers_survive_sigkill() {
    let dir = common::tempdir();
    {
        let db = Config::new(dir.path()).open().unwrap();
        let items: Vec<Item> = (0..ITEMS).map(|i| Item::new(format!("i{i}"))).collect();
        db.put_items(&items).unwrap();
        db.close().unwrap();
    }
    let mut acked: Vec<i64> = Vec::new();
    for round in 0..10i64 {
        acked.extend(acks_until_killed::<i64>(
            "crash_child_many_writers",
            dir.path(),
            &[(MANY_ROUND_ENV, round.to_string())],
            (40 + (round * 53) % 120) as usize,
        ));
        let db = common::open(dir.path());
        common::assert_clean(&db);
        for ts in &acked {
            let (t, i) = ((ts / 1_000_000) % 10, ts % 1_000_000);
            let history = db.history(&format!("w{t}-{}", i % 3)).unwrap();
            assert!(
                history.entries.iter().any(|e| e.timestamp == *ts),
                "round {round}: acknowledged interaction {ts} was lost"
            );
        }
        db.close().unwrap();
    }
    assert!(acked.len() >= 10 * 40, "too few acks: {}", acked.len());
}

const LOOP_DIR_ENV: &str = "CONVERGEDB_CRASH_LOOP_DIR";
const LOOP_SEED_ENV: &str = "CONVERGEDB_CRASH_LOOP_SEED";
const LOOP_LOG_ENV: &str = "CONVERGEDB_CRASH_LOOP_LOG";
const LOOP_BUFFERED_ENV: &str = "CONVERGEDB_CRASH_LOOP_BUFFERED";

/// The crash loop's child: applies the ops of its seed until killed, logging each ack.
#[test]
fn crash_loop_child() {
    let (Some(dir), Some(seed), Some(log)) = (
        std::env::var_os(LOOP_DIR_ENV),
        std::env::var(LOOP_SEED_ENV).ok(),
        std::env::var_os(LOOP_LOG_ENV),
    ) else {
        return;
    };
    let seed: u64 = seed.parse().unwrap();
    let buffered = std::env::var(LOOP_BUFFERED_ENV).is_ok_and(|b| b == "1");
    let db = ops::open_retrying(&ops::config(Path::new(&dir), durability(buffered))).unwrap();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    for i in 0.. {
        apply_write(&db, &ops::seeded_op(seed, i));
        writeln!(log, "{i}").unwrap();
        log.sync_data().unwrap();
    }
}

/// Applies the writes of `op` to `db`; rejected calls change nothing (the model predicts them).
fn apply_write(db: &convergedb::Db, op: &ops::Op) {
    use ops::Op;
    match op {
        Op::Put { items, insert_only } => {
            let _ = if *insert_only {
                db.insert_items(items)
            } else {
                db.put_items(items)
            };
        }
        Op::Delete(keys) => {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let _ = db.delete_items(&keys);
        }
        Op::PutVectors(name, vectors) => {
            let _ = db.put_vectors(name, vectors);
        }
        Op::Record(events) => {
            let _ = db.record_interactions(events);
        }
        Op::Tokenize {
            vector,
            levels,
            codes,
            seed,
            balance,
        } => {
            let mut opts = convergedb::TokenizeOptions::new(vector.clone());
            opts.levels = *levels;
            opts.codes = *codes;
            opts.iterations = 2;
            opts.seed = *seed;
            opts.balance_last_level = *balance;
            opts.threads = 1;
            let _ = db.tokenize(&opts, None);
        }
        // `seeded_op` never yields the generator ops.
        Op::Recommend(..)
        | Op::History(_)
        | Op::Get(_)
        | Op::Flush
        | Op::ExportImport
        | Op::Reopen(_)
        | Op::AttachGenerator(_)
        | Op::Refresh => {}
    }
}

/// The acknowledged op numbers in the child's log: complete lines only (the last one may be
/// torn by the kill), which must be 0, 1, 2, ... in order.
fn acked(log: &Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut n = 0;
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        assert_eq!(line.trim().parse::<u64>().unwrap(), n, "log out of order");
        n += 1;
    }
    n
}

#[test]
fn random_ops_survive_a_crash_loop() {
    let iters = env_number("CONVERGEDB_CRASH_ITERS", 200);
    let base = env_number("CONVERGEDB_CRASH_SEED", 0);
    crash_loop(Mode::Sync, iters, base);
}

/// With `Durability::Buffered`, a kill may lose the writes since the last flush, but the files
/// must always hold a prefix of the ops: each op entirely or not at all, never a later op
/// without an earlier one.
#[test]
fn buffered_crash_loop_recovers_a_prefix_of_the_ops() {
    let iters = env_number("CONVERGEDB_CRASH_ITERS", 200) / 2;
    let base = env_number("CONVERGEDB_CRASH_SEED", 0);
    crash_loop(Mode::Buffered, iters, base.wrapping_add(1 << 32));
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map_or(default, |n| {
        n.parse().unwrap_or_else(|_| panic!("{name} is a number"))
    })
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Sync,
    Buffered,
}

/// The durability of the crash loop's children: `Sync`, or `Buffered` flushed every 10 ms (the
/// children live 5-50 ms).
fn durability(buffered: bool) -> Durability {
    if buffered {
        Durability::Buffered { flush_every_ms: 10 }
    } else {
        Durability::Sync
    }
}

fn crash_loop(mode: Mode, iters: u64, base: u64) {
    let root = common::tempdir();
    let dir = root.path().join("db");
    let buffered = mode == Mode::Buffered;
    let mut model = Model::new(ops::limits());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(base);
    let (mut total_acked, mut in_flight_applied, mut killed_opening) = (0u64, 0u64, 0u64);
    let mut lost_acked = 0u64;
    for it in 0..iters {
        let seed = base.wrapping_mul(1_000_003).wrapping_add(it);
        let log = root.path().join(format!("log-{it}"));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_loop_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(LOOP_DIR_ENV, &dir)
            .env(LOOP_SEED_ENV, seed.to_string())
            .env(LOOP_LOG_ENV, &log)
            .env(LOOP_BUFFERED_ENV, if buffered { "1" } else { "0" })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if rng.gen_ratio(1, 10) {
            // Kill it while it is starting or recovering the files.
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..20)));
            killed_opening += 1;
        } else {
            let mut ready = String::new();
            let mut out = BufReader::new(child.stdout.take().unwrap());
            while !ready.contains("ready") {
                ready.clear();
                if out.read_line(&mut ready).unwrap() == 0 {
                    let mut err = String::new();
                    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                    panic!("iteration {it}: the child died before opening: {err}");
                }
            }
            std::thread::sleep(Duration::from_millis(rng.gen_range(5..=50)));
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();

        // The model after each prefix of the child's ops, up to the one in flight.
        let n = acked(&log);
        total_acked += n;
        let mut prefixes = vec![model];
        for i in 0..=n {
            let mut next = prefixes[prefixes.len() - 1].clone();
            ops::apply_to_model(&mut next, &ops::seeded_op(seed, i));
            prefixes.push(next);
        }
        // Sync: exactly the acknowledged ops, or those plus the one in flight. Buffered: any
        // prefix, the longest first.
        let candidates: Vec<usize> = match mode {
            Mode::Sync => vec![n as usize, n as usize + 1],
            Mode::Buffered => (0..=n as usize + 1).rev().collect(),
        };
        let mut h = Harness::attach(&dir, durability(buffered), prefixes[candidates[0]].clone())
            .unwrap_or_else(|e| panic!("iteration {it} (seed {seed}): reopen: {e}"));
        let mut found = None;
        let mut first_diff = String::new();
        for k in &candidates {
            h.model = prefixes[*k].clone();
            match h.compare() {
                Ok(()) => {
                    found = Some(*k);
                    break;
                }
                Err(e) if first_diff.is_empty() => first_diff = e,
                Err(_) => {}
            }
        }
        let Some(k) = found else {
            panic!(
                "iteration {it} (seed {seed}, {mode:?}, {n} acked ops): the state is no \
                 allowed prefix of the ops ({candidates:?}); against {}: {first_diff}; \
                 in flight: {:?}",
                candidates[0],
                ops::seeded_op(seed, n)
            );
        };
        if k as u64 > n {
            in_flight_applied += 1;
        }
        lost_acked += n.saturating_sub(k as u64);
        model = h.into_model();
    }
    println!(
        "crash loop ({mode:?}): {iters} iterations, {total_acked} acknowledged ops, \
         {lost_acked} acknowledged ops lost, in-flight op found applied {in_flight_applied} \
         times, killed while opening {killed_opening} times"
    );
    assert!(
        total_acked >= iters,
        "the children acknowledged too little: {total_acked}"
    );
    if mode == Mode::Sync {
        assert_eq!(lost_acked, 0);
    }
}
