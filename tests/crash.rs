//! Goal: nothing acknowledged under `Durability::Sync` is lost when the process is killed
//! (invariant 8), and the files always reopen with `check()` clean.
//! Method: the test re-runs its own binary as a child that records interactions with
//! `Durability::Sync` and prints "ack N" after each call returns; the parent SIGKILLs it after a
//! varying number of acks, reopens the database, and verifies every acknowledged interaction.
//! Limit: sled hands committed batches to the OS quickly even without a flush, so this test
//! proves recovery after a process crash but cannot by itself prove that the Sync flush ran.
//! A longer crash loop with random operations belongs to the consistency-fuzzing work.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use convergedb::{Config, Durability, Interaction, Item};

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
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let kill_after = 5 + (round * 37) % 60;
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("ack ") {
                acked.push(n.parse().unwrap());
                seen += 1;
                if seen == kill_after {
                    child.kill().unwrap(); // SIGKILL on Unix
                    break;
                }
            }
        }
        child.wait().unwrap();

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
