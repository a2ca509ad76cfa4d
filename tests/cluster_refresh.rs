//! Refreshing users of the Redis Cluster tier with the shipped model: in-process batches give
//! the same lists as a local generation over the same histories, a new record makes the
//! cached list stale until it is refreshed, and a `convergedb worker` process killed with
//! SIGKILL mid-stream leaves nothing behind that another worker does not finish.
//!
//! Needs the ONNX Runtime library (`ORT_DYLIB_PATH`) and a cluster (`common/cluster.rs`).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::bundle;
use convergedb::{Config, Db, Interaction, Source};

fn model_db(dir: &std::path::Path) -> Db {
    let db = bundle::open_with_catalog(Config::new(dir).refresh_workers(0));
    bundle::attach(&db);
    db
}

fn drain(db: &Db, tier: &convergedb::cluster::ClusterTier) -> convergedb::ClusterBatch {
    let mut total = convergedb::ClusterBatch::default();
    loop {
        let taken = tier.take("in-process", 8, 0).unwrap();
        if taken.is_empty() {
            return total;
        }
        let b = db.refresh_cluster_batch(tier, &taken).unwrap();
        total.written += b.written;
        total.conflicts += b.conflicts;
        total.skipped += b.skipped;
        total.failed += b.failed;
    }
}

#[test]
fn cluster_lists_equal_local_generation_and_go_stale_on_a_new_record() {
    let dir = common::tempdir();
    let db = model_db(dir.path());
    let tier = common::cluster::tier("refresh", |_| {});
    let events = bundle::synthetic_histories(10, 8, 3);
    db.record_to_cluster(&tier, &events).unwrap();
    db.record_interactions(&events).unwrap(); // the same histories locally, to compare
    let users: Vec<String> = (0..10).map(|u| format!("u{u}")).collect();
    for u in &users {
        assert_eq!(
            db.recommend_from_cluster(&tier, u, 10).unwrap().source,
            Source::Popularity
        );
    }
    let b = drain(&db, &tier);
    assert_eq!((b.written, b.failed), (10, 0), "{b:?}");
    for u in &users {
        let got = db.recommend_from_cluster(&tier, u, 10).unwrap();
        assert_eq!(got.source, Source::Model, "{u}");
        assert!(!got.stale, "{u}");
        let want = db.generate(u, 10).unwrap();
        assert_eq!(common::keys(&got), common::keys(&want), "{u}");
    }
    // A new record: the old list is served flagged stale until a worker refreshes it.
    let keys = bundle::item_keys();
    let new = Interaction::new("u3", keys[500].as_str(), 1_000_000);
    db.record_to_cluster(&tier, std::slice::from_ref(&new))
        .unwrap();
    let stale = db.recommend_from_cluster(&tier, "u3", 10).unwrap();
    assert!(stale.stale && stale.source == Source::Model);
    let b = drain(&db, &tier);
    assert_eq!(b.written, 1, "{b:?}");
    let fresh = db.recommend_from_cluster(&tier, "u3", 10).unwrap();
    assert!(!fresh.stale);
    assert_ne!(fresh.history_version, stale.history_version);
    assert!(
        !common::keys(&fresh).contains(&keys[500].as_str()),
        "a history item is never recommended"
    );
}

/// Every user's list is current and no marker is left: `(version, nonce)` of the list equal
/// the history's.
fn all_current(tier: &convergedb::cluster::ClusterTier, users: &[String]) -> bool {
    users.iter().all(|u| {
        let r = tier.read(u, 1).unwrap();
        r.pending.is_none() && r.list.as_ref().is_some_and(|(_, current)| *current)
    })
}

#[test]
fn a_killed_worker_process_leaves_nothing_another_worker_does_not_finish() {
    let dir = common::tempdir();
    let users: Vec<String> = (0..200).map(|u| format!("u{u}")).collect();
    let name = "killed";
    let tier = common::cluster::tier(name, |_| {});
    {
        let db = model_db(dir.path());
        db.record_to_cluster(&tier, &bundle::synthetic_histories(users.len(), 6, 9))
            .unwrap();
        db.close().unwrap();
    }
    let urls = common::cluster::urls().join(",");
    let ns = common::cluster::namespace(name);
    let worker = |name: &str, extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_convergedb"));
        cmd.args([
            "--db",
            dir.path().to_str().unwrap(),
            "worker",
            "--cluster",
            &urls,
        ])
        .args(["--namespace", &ns, "--name", name, "--batch", "4"])
        .arg("--model")
        .arg(bundle::bundle())
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        cmd
    };
    let mut first = worker("first", &[]).spawn().unwrap();
    // Kill it once it has written some lists but not all.
    let started = Instant::now();
    loop {
        let written = users
            .iter()
            .filter(|u| tier.read(u, 1).unwrap().list.is_some())
            .count();
        if written >= 4 {
            break;
        }
        if let Some(status) = first.try_wait().unwrap() {
            let out = first.wait_with_output().unwrap();
            panic!(
                "the first worker exited ({status}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the first worker wrote nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    assert!(
        !all_current(&tier, &users),
        "killed before it finished (test too slow to tell)"
    );
    let out = worker(
        "second",
        &[
            "--claim-idle-ms",
            "200",
            "--sweep-ms",
            "1000",
            "--exit-when-idle",
            "--json",
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["failed"], 0, "{summary}");
    assert!(
        all_current(&tier, &users),
        "every list current after the second worker: {summary}"
    );
}
