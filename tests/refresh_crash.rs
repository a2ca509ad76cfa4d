//! kill -9 during refreshes: a child process records interactions (`Durability::Sync`) while
//! its background worker refreshes lists with the shipped model; the parent SIGKILLs it at a
//! random moment, reopens, and requires `check()` clean — in particular invariant 4: every user
//! whose list is older than their history is still queued (`stale`), and the in-memory queue
//! holds every durable record. After the last iteration the queue drains and every list is
//! current. 6 iterations; `CONVERGEDB_REFRESH_CRASH_ITERS=<n>` for more.
//!
//! Needs the ONNX Runtime library (`ORT_DYLIB_PATH`, set by `./scripts/test`).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::bundle;
use convergedb::{Config, Durability, Interaction};
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "CONVERGEDB_REFRESH_CRASH_DIR";
const USERS: usize = 30;

/// The child's body: runs only when the parent sets `CHILD_ENV`.
#[test]
fn refresh_crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let db = Config::new(&dir)
        .durability(Durability::Sync)
        .refresh_workers(1)
        .refresh_max_batch(4)
        .open()
        .unwrap();
    bundle::attach(&db);
    println!("attached");
    let keys = bundle::item_keys();
    let mut rng = rand::rngs::StdRng::seed_from_u64(std::process::id() as u64);
    let start = db.stats().unwrap().interactions_recorded as i64;
    for n in 0.. {
        let user = format!("u{}", rng.gen_range(0..USERS));
        let item = keys[rng.gen_range(0..400)].clone();
        db.record_interactions(&[Interaction::new(user, item, 10_000 + start + n)])
            .unwrap();
        println!("ack {n}");
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..20)));
    }
}

#[test]
fn kill_9_during_refreshes_leaves_every_stale_user_queued() {
    let iterations: usize = std::env::var("CONVERGEDB_REFRESH_CRASH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let dir = common::tempdir();
    {
        let db = bundle::open_with_catalog(Config::new(dir.path()).refresh_workers(0));
        db.record_interactions(&bundle::synthetic_histories(USERS, 6, 9))
            .unwrap();
        bundle::attach(&db);
        db.wait_idle().unwrap();
        db.close().unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(77);
    let mut stale_seen = 0;
    for i in 0..iterations {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "refresh_crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let kill_after = rng.gen_range(5..60);
        let mut acks = 0;
        let mut attached = false;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            // libtest may print "test refresh_crash_child ... " before the first line.
            attached |= line.ends_with("attached");
            if line.contains("ack ") {
                acks += 1;
                if acks == kill_after {
                    break;
                }
            }
        }
        assert!(attached, "iteration {i}: the child did not start");
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let db = Config::new(dir.path()).refresh_workers(0).open().unwrap();
        let report = db.check().unwrap();
        assert!(report.is_clean(), "iteration {i}: {:?}", report.problems);
        // Every user whose list is older than the history is queued (check() verified the
        // durable side; this is the user-visible side), before any read could queue it.
        let queued = db.refresh_stats().queued;
        let mut outdated = 0;
        for u in 0..USERS {
            let user = format!("u{u}");
            let rec = db.recommend(&user, 5).unwrap();
            let version = db.history(&user).unwrap().version;
            if rec.history_version < version {
                assert!(
                    rec.stale,
                    "iteration {i}: {user} served an outdated list as current"
                );
                outdated += 1;
            }
        }
        assert!(
            queued >= outdated,
            "iteration {i}: {outdated} outdated lists but only {queued} users queued on open"
        );
        stale_seen += outdated;
        db.close().unwrap();
    }
    assert!(stale_seen > 0, "no kill ever left a stale list behind");
    let db = Config::new(dir.path()).refresh_workers(0).open().unwrap();
    bundle::attach(&db);
    db.wait_idle().unwrap();
    for u in 0..USERS {
        let user = format!("u{u}");
        let rec = db.recommend(&user, 5).unwrap();
        assert!(!rec.stale, "{user}");
        assert_eq!(rec.history_version, db.history(&user).unwrap().version);
    }
    common::assert_clean(&db);
}
