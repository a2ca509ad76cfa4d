//! The Redis Cluster tier (`convergedb::cluster`) on a real cluster (`common/cluster.rs`):
//! histories against a reference model, the (version, nonce) compare-and-swap, the Streams
//! queue's redelivery, parking, sweep and trim, and damaged values. Every test uses its own
//! key namespace.

mod common;

use std::collections::HashMap;

use common::cluster::{tier, urls as cluster_urls};
use convergedb::cluster::{
    ClusterConfig, ClusterDurability as Durability, ClusterEntry, ClusterTier,
};
use convergedb::Error;
use rand::{Rng, SeedableRng};

fn entry(item: u64, ts: i64) -> ClusterEntry {
    ClusterEntry {
        item_id: item,
        timestamp: ts,
        kind: (item % 3) as u32,
        weight: 1.0,
    }
}

/// Histories against a reference model: out-of-order arrivals, timestamp ties (arrival order),
/// the cap (with the tier's lazy trim), one version per record, the pending marker.
#[test]
fn histories_match_a_reference_model() {
    let cap = 16;
    let t = tier("model", |c| c.history_limit = cap);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
    let mut model: HashMap<String, (u64, Vec<ClusterEntry>)> = HashMap::new();
    let mut clock = 1_000i64;
    for op in 0..1_500u64 {
        let user = format!("user{}", rng.gen_range(0..12));
        let n = rng.gen_range(1..=5);
        let batch: Vec<ClusterEntry> = (0..n)
            .map(|_| {
                clock += rng.gen_range(0..3); // ties happen
                let ts = if rng.gen_bool(0.2) {
                    clock - rng.gen_range(0..200)
                } else {
                    clock
                };
                entry(rng.gen_range(0..1_000_000), ts)
            })
            .collect();
        let version = t.record(&user, &batch, op + 1).unwrap();
        let (v, all) = model.entry(user.clone()).or_default();
        *v += 1;
        let mut sorted = batch.clone();
        sorted.sort_by_key(|e| e.timestamp);
        all.extend(sorted);
        all.sort_by_key(|e| e.timestamp); // stable: older entries first on ties
        assert_eq!(version, *v, "op {op}: version of {user}");
        let h = t.history(&user).unwrap().expect("recorded user");
        let want = &all[all.len().saturating_sub(cap)..];
        assert_eq!(h.entries, want, "op {op}: history of {user}");
        assert_eq!(h.pending, Some(op + 1));
        let r = t.read(&user, 4).unwrap();
        assert_eq!(r.tail, want[want.len().saturating_sub(4)..]);
        assert_eq!((r.version, r.nonce), (h.version, h.nonce));
    }
    assert_eq!(t.history("nobody").unwrap(), None);
}

/// The list write is a compare-and-swap on (version, nonce); the marker clears only for the
/// seq the worker was dispatched for; a history rolled back to an old version count (as an
/// asynchronous failover can) has a new nonce, so a list computed before is refused.
#[test]
fn list_writes_compare_version_and_nonce() {
    let t = tier("cas", |_| {});
    t.record("u", &[entry(1, 10)], 7).unwrap();
    let h = t.history("u").unwrap().unwrap();
    assert!(t.write_list("u", h.version, h.nonce, 6, b"list-a").unwrap());
    let r = t.read("u", 8).unwrap();
    assert_eq!(r.list, Some((b"list-a".to_vec(), true)));
    assert_eq!(r.pending, Some(7), "another seq must not clear the marker");
    assert!(t.write_list("u", h.version, h.nonce, 7, b"list-b").unwrap());
    assert_eq!(t.read("u", 8).unwrap().pending, None);

    t.record("u", &[entry(2, 11)], 8).unwrap();
    let r = t.read("u", 8).unwrap();
    assert_eq!(
        r.list,
        Some((b"list-b".to_vec(), false)),
        "the old list is no longer current"
    );
    assert!(!t.write_list("u", h.version, h.nonce, 8, b"late").unwrap());
    assert!(!t
        .write_list("u", h.version + 1, h.nonce, 8, b"late")
        .unwrap());

    // Roll back: the history is recreated with the same number of records.
    let before = t.history("u").unwrap().unwrap();
    t.forget_user("u").unwrap();
    t.record("u", &[entry(3, 1)], 9).unwrap();
    t.record("u", &[entry(4, 2)], 10).unwrap();
    let after = t.history("u").unwrap().unwrap();
    assert_eq!(after.version, before.version);
    assert_ne!(after.nonce, before.nonce);
    assert!(!t
        .write_list("u", before.version, before.nonce, 10, b"ghost")
        .unwrap());
    assert_eq!(t.read("u", 8).unwrap().list, None);
}

/// At-least-once delivery: entries a worker took and never acknowledged are claimed by
/// another; after three deliveries the user parks, and a new record unparks it.
#[test]
fn queue_redelivers_then_parks() {
    let t = tier("queue", |c| c.shards = 4);
    let users: Vec<String> = (0..30).map(|i| format!("q{i}")).collect();
    for (i, u) in users.iter().enumerate() {
        t.record(u, &[entry(i as u64, 5)], i as u64 + 1).unwrap();
    }
    let first = t.take("worker-a", 100, 0).unwrap();
    let mut seen: Vec<&str> = first.iter().map(|d| d.user.as_str()).collect();
    seen.sort();
    let mut want: Vec<&str> = users.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(seen, want, "every user delivered once");
    assert!(
        t.take("worker-b", 100, 1).unwrap().is_empty(),
        "nothing new"
    );
    // worker-a dies: b takes over everything it held.
    let (second, parked) = t.claim_dead("worker-b", 0, 100).unwrap();
    assert_eq!((second.len(), parked), (30, 0));
    t.ack(&second[..10]).unwrap();
    let (third, parked) = t.claim_dead("worker-c", 0, 100).unwrap();
    assert_eq!((third.len(), parked), (20, 0));
    // Delivered three times: parked, acknowledged, not delivered again.
    let (fourth, parked) = t.claim_dead("worker-d", 0, 100).unwrap();
    assert_eq!((fourth.len(), parked), (0, 20));
    let worn = &third[0].user;
    assert!(t.read(worn, 1).unwrap().parked);
    assert_eq!(
        t.sweep(0).unwrap(),
        10,
        "the sweep re-notifies the unparked pending users only"
    );
    t.record(worn, &[entry(99, 6)], 500).unwrap();
    assert!(!t.read(worn, 1).unwrap().parked, "a new record unparks");
    let again = t.take("worker-e", 100, 0).unwrap();
    assert_eq!(again.iter().filter(|d| &d.user == worn).count(), 1);
    assert_eq!(again.len(), 11);
    // Consumers holding nothing are forgotten (a-d: everything claimed or parked); worker-e
    // holds 11 entries and stays, so claim_dead can still hand them over.
    assert!(t.forget_dead_consumers(0).unwrap() >= 4);
    let (claimed, _) = t.claim_dead("worker-f", 0, 100).unwrap();
    assert_eq!(claimed.len(), 11, "worker-e's entries survived the cleanup");
}

/// A lost notification (the record landed, the stream entry did not survive) is healed by the
/// sweep; acknowledged entries are trimmed away.
#[test]
fn sweep_heals_lost_notifications_and_trim_drops_acked_entries() {
    let t = tier("sweep", |c| c.shards = 3);
    for i in 0..25u64 {
        t.record(&format!("s{i}"), &[entry(i, 1)], i + 1).unwrap();
    }
    let taken = t.take("w", 100, 0).unwrap();
    assert_eq!(taken.len(), 25);
    t.ack(&taken).unwrap(); // acknowledged without a list: as if the notification were lost
    assert_eq!(t.trim().unwrap(), 25);
    assert_eq!(t.queue_len().unwrap(), 0);
    assert_eq!(
        t.sweep(60_000).unwrap(),
        0,
        "markers are younger than the sweep's age"
    );
    assert_eq!(t.sweep(0).unwrap(), 25);
    let again = t.take("w", 100, 0).unwrap();
    assert_eq!(again.len(), 25);
    // Lists written for all but one user: only that one is left for the sweep.
    for d in &again[1..] {
        let h = t.history(&d.user).unwrap().unwrap();
        assert!(t
            .write_list(&d.user, h.version, h.nonce, d.seq, b"l")
            .unwrap());
    }
    t.ack(&again).unwrap();
    assert_eq!(t.sweep(0).unwrap(), 1);
    let left = t.take("w", 100, 0).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].user, again[0].user);
    t.ack(&left).unwrap();
    t.trim().unwrap();
    assert_eq!(t.queue_len().unwrap(), 0);
}

/// Bad configuration and damaged or foreign values get typed errors, never a panic.
#[test]
fn bad_input_and_damaged_values_are_refused() {
    for ns in ["", "a}b", "a b", &"x".repeat(65)] {
        let mut c = ClusterConfig::new(cluster_urls());
        c.namespace = ns.to_string();
        assert!(
            matches!(ClusterTier::connect(c), Err(Error::InvalidArgument(_))),
            "{ns:?}"
        );
    }
    let dead = ClusterConfig::new(["redis://127.0.0.1:1"]);
    assert!(matches!(ClusterTier::connect(dead), Err(Error::Cluster(_))));

    let t = tier("damage", |_| {});
    assert!(matches!(
        t.record("u", &[], 1),
        Err(Error::InvalidArgument(_))
    ));
    t.record("u", &[entry(1, 1)], 1).unwrap();
    // Damage the user's keys directly.
    let ns = &t.config().namespace;
    let client = redis::cluster::ClusterClient::new(cluster_urls()).unwrap();
    let mut raw = client.get_connection().unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("{{{ns}:u:u}}:m"))
        .arg("v")
        .arg("abc")
        .query(&mut raw)
        .unwrap();
    assert!(matches!(t.read("u", 4), Err(Error::Corruption { .. })));
    let _: () = redis::cmd("HSET")
        .arg(format!("{{{ns}:u:u}}:m"))
        .arg("v")
        .arg("1")
        .query(&mut raw)
        .unwrap();
    let _: () = redis::cmd("APPEND")
        .arg(format!("{{{ns}:u:u}}:h"))
        .arg("xyz")
        .query(&mut raw)
        .unwrap();
    assert!(matches!(t.history("u"), Err(Error::Corruption { .. })));
    assert!(
        matches!(t.record("u", &[entry(2, 2)], 2), Err(Error::Cluster(m)) if m.contains("not a multiple of 24"))
    );
}

/// Sync means a replica has the write: on a cluster without replicas a Sync record fails with
/// an error that says so instead of acknowledging.
#[test]
fn sync_needs_a_replica() {
    let t = tier("sync", |c| {
        c.durability = Durability::Sync;
        c.wait_timeout_ms = 100;
    });
    let info: String = {
        let client = redis::cluster::ClusterClient::new(cluster_urls()).unwrap();
        let mut raw = client.get_connection().unwrap();
        redis::cmd("CLUSTER").arg("NODES").query(&mut raw).unwrap()
    };
    let replicas = info.lines().filter(|l| l.contains("slave")).count();
    let r = t.record("u", &[entry(1, 1)], 1);
    if replicas == 0 {
        assert!(
            matches!(&r, Err(Error::Cluster(m)) if m.contains("no replica")),
            "{r:?}"
        );
    } else {
        r.unwrap();
    }
}
