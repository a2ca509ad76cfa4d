//! Goal: `Durability::Buffered { flush_every_ms }` keeps its loss bound under load
//! (docs/design.md, "Durability"): when a write returns, every write that had returned more than
//! `flush_every_ms` before it was called is on disk. So after a crash, a lost acknowledged
//! write `w` was acknowledged less than the interval before the start of every later
//! acknowledged write: `end(w) + interval >= start(x)` for every acknowledged `x`.
//!
//! Method: a child process runs 4 writer threads recording interactions with a 100 ms interval
//! as fast as they can (the load), and logs `start end n` for each acknowledged write (its
//! monotonic start and end times in nanoseconds, one `write(2)` per line, so the log survives
//! the kill). The parent SIGKILLs it after 100-400 ms, reopens, and checks every acknowledged
//! write against the rule above; writes the rule does not protect may be lost (counted). The
//! times are the child's own, compared with each other only: the rule itself, no margin.
//! 20 kills; `CONVERGEDB_BUFFERED_KILLS=<n>` (and `CONVERGEDB_BUFFERED_SEED`) for a campaign.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use convergedb::{Config, Durability, Interaction, Item};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DIR_ENV: &str = "CONVERGEDB_BUFFERED_CHILD_DIR";
const LOG_ENV: &str = "CONVERGEDB_BUFFERED_CHILD_LOG";
const BASE_ENV: &str = "CONVERGEDB_BUFFERED_CHILD_BASE";
const INTERVAL_MS: u64 = 100;
const THREADS: u64 = 4;
const USERS: u64 = 11;
const ITEMS: u64 = 16;

fn durability() -> Durability {
    Durability::Buffered {
        flush_every_ms: INTERVAL_MS,
    }
}

/// The child: writer threads until killed.
#[test]
fn buffered_bound_child() {
    let (Some(dir), Some(log), Some(base)) = (
        std::env::var_os(DIR_ENV),
        std::env::var_os(LOG_ENV),
        std::env::var(BASE_ENV).ok(),
    ) else {
        return;
    };
    let base: u64 = base.parse().unwrap();
    let db = Config::new(&dir).durability(durability()).open().unwrap();
    let epoch = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let db = db.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                let mut log = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(log)
                    .unwrap();
                for i in 0.. {
                    let n = base + i * THREADS + t;
                    let event = Interaction::new(
                        format!("u{}", n % USERS),
                        format!("i{}", n % ITEMS),
                        n as i64,
                    );
                    let start = epoch.elapsed().as_nanos();
                    db.record_interactions(&[event]).unwrap();
                    let end = epoch.elapsed().as_nanos();
                    // One write(2) per line: whole lines survive the SIGKILL.
                    log.write_all(format!("{start} {end} {n}\n").as_bytes())
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

struct Ack {
    start: u128,
    end: u128,
    n: u64,
}

fn read_log(path: &Path) -> Vec<Ack> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (Some(s), Some(e), Some(n), None) = (f.next(), f.next(), f.next(), f.next()) else {
                return None; // a line cut by the kill (not acknowledged in the log)
            };
            Some(Ack {
                start: s.parse().ok()?,
                end: e.parse().ok()?,
                n: n.parse().ok()?,
            })
        })
        .collect()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
        .unwrap_or(default)
}

#[test]
fn buffered_writes_older_than_the_interval_survive_sigkill() {
    let kills = env_u64("CONVERGEDB_BUFFERED_KILLS", 20);
    let seed = env_u64("CONVERGEDB_BUFFERED_SEED", 20261202);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let root = common::tempdir();
    let dir = root.path().join("db");
    {
        let db = Config::new(&dir)
            .durability(Durability::Sync)
            .open()
            .unwrap();
        let items: Vec<Item> = (0..ITEMS).map(|i| Item::new(format!("i{i}"))).collect();
        db.put_items(&items).unwrap();
        db.close().unwrap();
    }
    let interval_ns = u128::from(INTERVAL_MS) * 1_000_000;
    let (mut acked, mut protected, mut lost_allowed) = (0usize, 0usize, 0usize);
    let mut max_lost_age_ms = 0f64;
    let mut violations = Vec::new();
    for kill in 0..kills {
        let log = root.path().join(format!("acks-{kill}.log"));
        let base = kill * 100_000_000;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "buffered_bound_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(DIR_ENV, &dir)
            .env(LOG_ENV, &log)
            .env(BASE_ENV, base.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..400)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();

        let acks = read_log(&log);
        let db = Config::new(&dir).durability(durability()).open().unwrap();
        let mut present: HashSet<i64> = HashSet::new();
        let mut by_user: BTreeMap<u64, ()> = BTreeMap::new();
        for a in &acks {
            by_user.insert(a.n % USERS, ());
        }
        for u in by_user.keys() {
            if let Ok(h) = db.history(&format!("u{u}")) {
                present.extend(h.entries.iter().map(|e| e.timestamp));
            }
        }
        common::assert_clean(&db);
        db.close().unwrap();
        let latest_start = acks.iter().map(|a| a.start).max().unwrap_or(0);
        for a in &acks {
            acked += 1;
            let is_protected = a.end + interval_ns < latest_start;
            if is_protected {
                protected += 1;
            }
            if !present.contains(&(a.n as i64)) {
                if is_protected {
                    violations.push(format!(
                        "kill {kill}: write {} acknowledged {:.1} ms before the start of a later \
                         acknowledged write is lost",
                        a.n,
                        (latest_start - a.end) as f64 / 1e6
                    ));
                } else {
                    lost_allowed += 1;
                    max_lost_age_ms =
                        max_lost_age_ms.max(latest_start.saturating_sub(a.end) as f64 / 1e6);
                }
            }
        }
    }
    println!(
        "{kills} kills (seed {seed}) of {THREADS} Buffered writers ({INTERVAL_MS} ms): {acked} \
         acknowledged writes, {protected} of them older than the interval (must survive), \
         {lost_allowed} younger ones lost (allowed; the oldest {max_lost_age_ms:.1} ms before \
         the last acknowledged write started), {} violations",
        violations.len()
    );
    assert!(acked > 0, "the children acknowledged nothing");
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
