//! `kill -9` of a master during a stream of Sync records through the facade of a node opened
//! with `Config::cluster` on a 3+3 loopback cluster (its own, started with
//! `scripts/redis-cluster start --replicas 1 --owner`), with the node's refresh thread and the
//! shipped model refreshing lists all along: calls fail while the cluster fails over, none is
//! acknowledged without being on a replica, and afterwards every acknowledged interaction is
//! in its user's history, the node's `check()` is clean and every user's list becomes current.
//! After the failover the promoted master has no replica (its old master is dead), so Sync
//! records of its slots keep failing (`WAIT` times out) while the other masters' users are
//! acknowledged: the stream stops after 100 of those. Lists are derived writes (no `WAIT`), so
//! they are refreshed on every master.
//!
//! Needs the ONNX Runtime library (`ORT_DYLIB_PATH`).

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::bundle;
use convergedb::cluster::{ClusterConfig, ClusterDurability};
use convergedb::{Config, Interaction, Source};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/redis-cluster");

#[test]
fn no_acknowledged_sync_record_is_lost_when_a_master_is_killed() {
    let out = Command::new(SCRIPT)
        .args([
            "start",
            "--replicas",
            "1",
            "--owner",
            &std::process::id().to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let urls: Vec<String> = std::fs::read_to_string(format!("{dir}/urls"))
        .unwrap()
        .trim()
        .split(',')
        .map(str::to_string)
        .collect();
    let mut config = ClusterConfig::new(urls);
    config.namespace = "failover".into();
    config.durability = ClusterDurability::Sync;
    config.wait_timeout_ms = 500;
    let node = common::tempdir();
    let db = bundle::open_with_catalog(Config::new(node.path()).refresh_workers(1).cluster(config));
    bundle::attach(&db);
    let keys = bundle::item_keys();

    let users: Vec<String> = (0..40).map(|u| format!("f{u}")).collect();
    let mut acked: HashMap<&str, Vec<i64>> = HashMap::new();
    let (mut errors, mut item, mut killed_at) = (0u64, 0u64, None::<Instant>);
    let mut acked_after_kill = 0;
    let mut first_ack_after_kill = None::<Duration>;
    let started = Instant::now();
    while acked_after_kill < 100 {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the cluster did not recover"
        );
        let user = &users[(item % users.len() as u64) as usize];
        item += 1;
        let e = Interaction::new(
            user.as_str(),
            keys[(item as usize * 7) % 400].as_str(),
            item as i64,
        );
        match db.record_interactions(&[e]) {
            Ok(()) => {
                acked.entry(user).or_default().push(item as i64);
                if let Some(at) = killed_at {
                    acked_after_kill += 1;
                    first_ack_after_kill.get_or_insert(at.elapsed());
                }
            }
            Err(convergedb::Error::Cluster(_)) => errors += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
        if killed_at.is_none() && item == 400 {
            let k = Command::new(SCRIPT)
                .args(["kill-master", &dir, "0"])
                .output()
                .unwrap();
            assert!(k.status.success(), "{}", String::from_utf8_lossy(&k.stderr));
            killed_at = Some(Instant::now());
        }
    }
    assert!(errors > 0, "the kill was not noticed (no call failed)");
    let mut lost = 0;
    for (user, stamps) in &acked {
        let h = db.history(user).unwrap();
        let have: std::collections::HashSet<i64> = h.entries.iter().map(|e| e.timestamp).collect();
        lost += stamps.iter().filter(|t| !have.contains(t)).count();
    }
    // Every list current: the refresh thread and wait_idle (on this thread) drain the queue.
    let drain = Instant::now();
    assert!(
        db.wait_idle_timeout(Duration::from_secs(120)).unwrap(),
        "the queue did not drain after the failover"
    );
    let stale: Vec<&String> = users
        .iter()
        .filter(|u| {
            let r = db.recommend(u, 10).unwrap();
            r.source != Source::Model || r.stale
        })
        .collect();
    let s = db.refresh_stats();
    eprintln!(
        "failover: {errors} calls failed, first acknowledgement {:.1} s after the kill, \
         {} acknowledged records checked, {lost} lost; lists written {}, conflicts {}, \
         failed refreshes {}, every list current {:.1} s after the stream",
        first_ack_after_kill.unwrap_or_default().as_secs_f64(),
        acked.values().map(Vec::len).sum::<usize>(),
        s.lists_written,
        s.conflicts,
        s.failures,
        drain.elapsed().as_secs_f64()
    );
    assert_eq!(
        lost, 0,
        "acknowledged Sync records lost ({errors} calls failed during failover)"
    );
    assert!(
        stale.is_empty(),
        "lists not current after the failover: {stale:?}"
    );
    common::assert_clean(&db);
    db.close().unwrap();
    Command::new(SCRIPT).args(["stop", &dir]).status().unwrap();
}
