//! Goal: acknowledged `Sync` writes are never lost silently after damage to sled's log: either
//! every acknowledged write is there, or `open` fails (`Error::LostWrites` when recovery came
//! back without acknowledged commits, or sled's own corruption error), and accepting the loss
//! (`Config::accept_lost_writes`) is explicit. Nothing reaches stderr, even when sled panics in
//! recovery.
//!
//! Method (`bit_flips_never_lose_acknowledged_writes_silently`): a child process records
//! interactions with `Durability::Sync`, printing "ack N" after each call returns, and is
//! SIGKILLed after 150 acknowledgements. Each case copies that database, flips one bit of sled's
//! `db` file (three cases in four in its recent part, the last 64 KiB before the end of its data
//! where the newest log records are; the others anywhere in its data) and opens the copy in a child process (sled may abort or hang on damage; the
//! parent keeps a watchdog) that checks every acknowledged write and prints the outcome: intact,
//! refused with `LostWrites` (then the child also accepts the loss and reopens), refused by sled
//! (corruption), or silent loss (must never happen). 40 cases; `CONVERGEDB_BITFLIP_CASES=<n>` and
//! `CONVERGEDB_BITFLIP_SEED=<s>` for a campaign.
//!
//! `restored_old_files_are_refused_with_lost_writes` makes the loss deterministic: sled's files
//! from an earlier point beside the newer `convergedb.ack`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use convergedb::{Config, Durability, Error, Interaction, Item};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const WRITER_ENV: &str = "CONVERGEDB_LOST_WRITES_WRITER";
const CHECK_DIR_ENV: &str = "CONVERGEDB_LOST_WRITES_CHECK_DIR";
const CHECK_ACKS_ENV: &str = "CONVERGEDB_LOST_WRITES_CHECK_ACKS";
const ACKS_BEFORE_KILL: usize = 150;
const USERS: usize = 7;
const ITEMS: usize = 20;
const RECENT_BYTES: usize = 64 * 1024;
const CASE_TIMEOUT: Duration = Duration::from_secs(60);

fn user(n: usize) -> String {
    format!("u{}", n % USERS)
}

/// The writer child: Sync interactions until killed, "ack N" after each returns.
#[test]
fn lost_writes_writer_child() {
    let Some(dir) = std::env::var_os(WRITER_ENV) else {
        return;
    };
    let db = Config::new(&dir)
        .durability(Durability::Sync)
        .open()
        .unwrap();
    let items: Vec<Item> = (0..ITEMS).map(|i| Item::new(format!("i{i}"))).collect();
    db.put_items(&items).unwrap();
    for n in 0.. {
        let item = format!("i{}", n % ITEMS);
        db.record_interactions(&[Interaction::new(user(n), item, n as i64)])
            .unwrap();
        println!("ack {n}");
    }
}

/// Runs the writer child on `dir` until it acknowledged `acks` writes, then SIGKILLs it.
fn write_and_kill(dir: &Path, acks: usize) -> Vec<usize> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lost_writes_writer_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(WRITER_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(n) = line.unwrap().strip_prefix("ack ") {
            acked.push(n.parse().unwrap());
            if acked.len() == acks {
                child.kill().unwrap(); // SIGKILL on Unix
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(acked.len(), acks, "the writer stopped early");
    acked
}

/// The checking child: opens a damaged copy and prints one `outcome ...` line.
#[test]
fn lost_writes_check_child() {
    let (Some(dir), Some(acks)) = (
        std::env::var_os(CHECK_DIR_ENV),
        std::env::var_os(CHECK_ACKS_ENV),
    ) else {
        return;
    };
    let acked: Vec<usize> = std::fs::read_to_string(acks)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    println!("outcome {}", classify(Path::new(&dir), &acked));
}

fn classify(dir: &Path, acked: &[usize]) -> String {
    match Config::new(dir).open() {
        Ok(db) => {
            let missing = missing_acks(&db, acked);
            if missing > 0 {
                return format!("SILENT-LOSS {missing} acknowledged writes missing");
            }
            match db.check() {
                Ok(r) if r.is_clean() => "intact".into(),
                Ok(r) => format!("check-reports {:?}", r.problems.first()),
                Err(e) => format!("check-error {e}"),
            }
        }
        Err(Error::LostWrites {
            acknowledged,
            recovered,
            ..
        }) => {
            // Accepting goes on with what was recovered and makes the next open plain.
            let db = Config::new(dir)
                .accept_lost_writes(true)
                .open()
                .expect("accept_lost_writes opens");
            let report = db.check().expect("check runs");
            drop(db);
            let again = Config::new(dir)
                .open()
                .map(|_| ())
                .map_err(|e| e.to_string());
            if again.is_err() {
                return format!("BROKEN-ACCEPT reopen after accepting failed: {again:?}");
            }
            format!(
                "refused-lost-writes ({} commits; check after accepting clean: {})",
                acknowledged - recovered,
                report.is_clean()
            )
        }
        Err(e) => format!("refused-by-sled ({})", first_words(&e.to_string())),
    }
}

fn first_words(e: &str) -> String {
    e.chars()
        .take_while(|c| !c.is_ascii_digit() && *c != '"')
        .take(60)
        .collect()
}

/// Acknowledged interactions absent from the histories (an unreadable history counts all of
/// its user's acknowledged writes as missing only if the read itself succeeds without them).
fn missing_acks(db: &convergedb::Db, acked: &[usize]) -> usize {
    let mut by_user: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for n in acked {
        by_user.entry(user(*n)).or_default().push(*n as i64);
    }
    let mut missing = 0;
    for (u, stamps) in by_user {
        let have: Vec<i64> = match db.history(&u) {
            Ok(h) => h.entries.iter().map(|e| e.timestamp).collect(),
            Err(Error::UnknownUser { .. }) => Vec::new(),
            Err(e) => panic!("history({u}) failed after a clean open: {e}"),
        };
        missing += stamps.iter().filter(|t| !have.contains(t)).count();
    }
    missing
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

/// Flips one bit of sled's `db` file: in the newest part of its log when `recent`, else anywhere
/// before the end of its data; returns the offset and bit.
fn flip_bit(db_file: &Path, recent: bool, rng: &mut ChaCha8Rng) -> (usize, u8) {
    let mut bytes = std::fs::read(db_file).unwrap();
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
    assert!(end > 0, "sled's db file holds no data");
    let start = if recent {
        end.saturating_sub(RECENT_BYTES)
    } else {
        0
    };
    let at = rng.gen_range(start..end);
    let bit = rng.gen_range(0..8u8);
    bytes[at] ^= 1 << bit;
    std::fs::write(db_file, bytes).unwrap();
    (at, bit)
}

/// Runs the checking child under a watchdog; returns its outcome line and its stderr.
fn check_in_child(dir: &Path, acks: &Path) -> (String, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lost_writes_check_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHECK_DIR_ENV, dir)
        .env(CHECK_ACKS_ENV, acks)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let mut err = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = stderr.read_to_string(&mut err);
        let _ = tx.send((out, err));
    });
    let (out, err) = match rx.recv_timeout(CASE_TIMEOUT) {
        Ok(v) => v,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return ("HANG".into(), String::new());
        }
    };
    let status = child.wait().unwrap();
    let outcome = out
        .lines()
        // libtest may print "test NAME ... " before the child's line on the same line.
        .find_map(|l| l.split_once("outcome ").map(|(_, o)| o.to_string()))
        .unwrap_or_else(|| format!("CHILD-DIED ({status})"));
    (outcome, err)
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
fn bit_flips_never_lose_acknowledged_writes_silently() {
    let cases = env_u64("CONVERGEDB_BITFLIP_CASES", 40);
    let seed = env_u64("CONVERGEDB_BITFLIP_SEED", 20261202);
    let root = common::tempdir();
    let source = root.path().join("source");
    let acked = write_and_kill(&source, ACKS_BEFORE_KILL);
    let acks_file = root.path().join("acks.txt");
    let text: String = acked.iter().map(|n| format!("{n}\n")).collect();
    std::fs::write(&acks_file, text).unwrap();

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut counts: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut broken = Vec::new();
    for case in 0..cases {
        let dir: PathBuf = root.path().join(format!("case-{case}"));
        copy_dir(&source, &dir);
        // Three cases in four in the recent log (where a flip drops acknowledged writes), the
        // rest anywhere (older records, sled's headers).
        let recent = case % 4 != 3;
        let (at, bit) = flip_bit(&dir.join("db"), recent, &mut rng);
        let (outcome, stderr) = check_in_child(&dir, &acks_file);
        let kind = outcome
            .split([' ', '('])
            .next()
            .unwrap_or_default()
            .to_string();
        if std::env::var_os("CONVERGEDB_BITFLIP_VERBOSE").is_some() {
            println!("case {case}: db byte {at} bit {bit}: {outcome}");
        }
        let entry = counts
            .entry(kind.clone())
            .or_insert_with(|| (0, format!("db byte {at} bit {bit}: {outcome}")));
        entry.0 += 1;
        let quiet = !stderr.contains("panicked");
        if !matches!(
            kind.as_str(),
            "intact" | "refused-lost-writes" | "refused-by-sled" | "check-reports"
        ) || !quiet
        {
            broken.push(format!(
                "case {case} (db byte {at} bit {bit}): {outcome}; stderr: {stderr}"
            ));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    println!(
        "{cases} single-bit flips (seed {seed}) of a database with {} acknowledged Sync writes:",
        acked.len()
    );
    for (kind, (n, example)) in &counts {
        println!("  {kind}: {n} (e.g. {example})");
    }
    assert!(
        broken.is_empty(),
        "{} of {cases} cases broke the promise:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

fn record(db: &convergedb::Db, range: std::ops::Range<usize>) {
    for n in range {
        let item = format!("i{}", n % ITEMS);
        db.record_interactions(&[Interaction::new(user(n), item, n as i64)])
            .unwrap();
    }
}

/// A database in `root/old` whose storage files are from after 10 acknowledged interactions
/// and whose `convergedb.ack` is from after 25: exactly what a recovery that dropped the newest
/// 15 commits leaves.
fn restored_old_files(root: &Path) -> PathBuf {
    let dir = root.join("db");
    let old = root.join("old");
    let db = Config::new(&dir)
        .durability(Durability::Sync)
        .open()
        .unwrap();
    let items: Vec<Item> = (0..ITEMS).map(|i| Item::new(format!("i{i}"))).collect();
    db.put_items(&items).unwrap();
    record(&db, 0..10);
    db.close().unwrap();
    copy_dir(&dir, &old);
    let db = Config::new(&dir)
        .durability(Durability::Sync)
        .open()
        .unwrap();
    record(&db, 10..25);
    db.close().unwrap();
    std::fs::copy(dir.join("convergedb.ack"), old.join("convergedb.ack")).unwrap();
    old
}

#[test]
fn restored_old_files_are_refused_with_lost_writes() {
    let root = common::tempdir();
    let old = restored_old_files(root.path());
    let err = Config::new(&old).open().unwrap_err();
    match &err {
        Error::LostWrites {
            acknowledged,
            recovered,
            path,
        } => {
            assert_eq!(acknowledged - recovered, 15);
            assert_eq!(path, &old);
        }
        other => panic!("expected LostWrites, got {other:?}"),
    }
    let msg = err.to_string();
    for needle in [
        "15 acknowledged commits are missing",
        "accept_lost_writes(true)",
        "--accept-lost-writes",
        "convergedb_options.accept_lost_writes",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in: {msg}");
    }
    // Refusing changed nothing: a second plain open refuses the same way.
    assert!(matches!(
        Config::new(&old).open(),
        Err(Error::LostWrites { .. })
    ));
    // Accepting opens what was recovered, and rewrites the record.
    let db = Config::new(&old).accept_lost_writes(true).open().unwrap();
    assert_eq!(db.stats().unwrap().interactions_recorded, 10);
    common::assert_clean(&db);
    db.close().unwrap();
    let db = Config::new(&old).open().unwrap();
    record(&db, 10..12);
    db.close().unwrap();
}

#[test]
fn a_damaged_ack_file_is_refused_until_accepted() {
    let root = common::tempdir();
    let dir = root.path().join("db");
    let db = Config::new(&dir)
        .durability(Durability::Sync)
        .open()
        .unwrap();
    db.put_items(&[Item::new("a")]).unwrap();
    db.close().unwrap();
    let ack = dir.join("convergedb.ack");
    let mut bytes = std::fs::read(&ack).unwrap();
    bytes[9] ^= 0x10;
    std::fs::write(&ack, bytes).unwrap();
    let err = Config::new(&dir).open().unwrap_err();
    assert!(
        err.to_string().contains("accept_lost_writes"),
        "unexpected: {err}"
    );
    let db = Config::new(&dir).accept_lost_writes(true).open().unwrap();
    assert!(db.get_item("a").is_ok());
    db.close().unwrap();
    Config::new(&dir).open().unwrap().close().unwrap();
}

#[test]
fn the_cli_refuses_then_accepts_lost_writes() {
    let root = common::tempdir();
    let old = restored_old_files(root.path());
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_convergedb"))
            .arg("--db")
            .arg(&old)
            .args(extra)
            .arg("stats")
            .output()
            .unwrap()
    };
    let refused = run(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "stats opened a database with lost writes"
    );
    assert!(
        stderr.contains("15 acknowledged commits are missing")
            && stderr.contains("--accept-lost-writes"),
        "unexpected stderr: {stderr}"
    );
    let accepted = run(&["--accept-lost-writes"]);
    assert!(
        accepted.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    assert!(run(&[]).status.success(), "the record was not rewritten");
}
