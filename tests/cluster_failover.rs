//! `kill -9` of a master during a stream of Sync records on a 3+3 loopback cluster (its own,
//! started with `scripts/redis-cluster start --replicas 1 --owner`): calls fail while the
//! cluster fails over, none is acknowledged without being on a replica, and afterwards every
//! acknowledged entry is in its user's history. After the failover the promoted master has no
//! replica (its old master is dead), so Sync records of its slots keep failing (`WAIT` times
//! out) while the other masters' users are acknowledged: the test stops after 100 of those.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use convergedb::cluster::{ClusterConfig, ClusterDurability, ClusterEntry, ClusterTier};

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
    let tier = ClusterTier::connect(config).unwrap();

    let users: Vec<String> = (0..40).map(|u| format!("f{u}")).collect();
    let mut acked: HashMap<&str, Vec<u64>> = HashMap::new();
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
        let e = ClusterEntry {
            item_id: item,
            timestamp: item as i64,
            kind: 0,
            weight: 1.0,
        };
        match tier.record(user, &[e], item) {
            Ok(_) => {
                acked.entry(user).or_default().push(item);
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
    for (user, items) in &acked {
        let h = tier.history(user).unwrap().expect("a recorded user");
        let have: std::collections::HashSet<u64> = h.entries.iter().map(|e| e.item_id).collect();
        lost += items.iter().filter(|i| !have.contains(i)).count();
    }
    eprintln!(
        "failover: {errors} calls failed, first acknowledgement {:.1} s after the kill, \
         {} acknowledged records checked, {lost} lost",
        first_ack_after_kill.unwrap_or_default().as_secs_f64(),
        acked.values().map(Vec::len).sum::<usize>()
    );
    assert_eq!(
        lost, 0,
        "acknowledged Sync records lost ({errors} calls failed during failover)"
    );
    Command::new(SCRIPT).args(["stop", &dir]).status().unwrap();
}
