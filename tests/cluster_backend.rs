//! A database opened with `Config::cluster`: every per-user call of the facade goes to the
//! Redis Cluster (histories, cached lists, the refresh queue) while the catalog, codes and
//! model stay in the node's directory. Two nodes with the same catalog share the users; the
//! read rules are the local backend's (current, stale and flagged, fallback); the in-process
//! refresh threads, `wait_idle`, `refresh`, `refresh_now` and a model swap work as they do
//! locally.
//!
//! Needs the ONNX Runtime library (`ORT_DYLIB_PATH`) and a cluster (`common/cluster.rs`).

mod common;

use std::time::{Duration, Instant};

use common::bundle;
use convergedb::cluster::{ClusterConfig, ClusterDurability};
use convergedb::{Config, Db, Error, Interaction, ModelOptions, Source};

fn cluster_config(name: &str) -> ClusterConfig {
    let mut c = ClusterConfig::new(common::cluster::urls());
    c.namespace = common::cluster::namespace(name);
    c.durability = ClusterDurability::Buffered;
    c
}

/// A node: its own directory with the bundle's catalog, the shared cluster namespace `name`.
fn node(dir: &std::path::Path, name: &str, workers: usize) -> Db {
    bundle::open_with_catalog(
        Config::new(dir)
            .refresh_workers(workers)
            .cluster(cluster_config(name)),
    )
}

#[test]
fn two_nodes_share_the_users_and_serve_them_by_the_local_rules() {
    let (da, db_dir) = (common::tempdir(), common::tempdir());
    let a = node(da.path(), "shared", 0);
    let b = node(db_dir.path(), "shared", 0);
    let keys = bundle::item_keys();
    let mut events = bundle::synthetic_histories(6, 8, 5);
    events[0].kind = Some("click".into());
    events[1].kind = Some("rating".into());
    a.record_interactions(&events).unwrap();

    // Node b sees node a's histories, kinds by name included.
    let h = b.history("u0").unwrap();
    assert_eq!(h.entries.len(), 8);
    assert_eq!(h.recorded, 8);
    assert_eq!(h.entries[0].kind.as_deref(), Some("click"));
    assert_eq!(h.entries[1].kind.as_deref(), Some("rating"));
    assert_eq!(h.entries[2].kind, None);
    assert_eq!(
        common::history_keys(&h),
        common::history_keys(&a.history("u0").unwrap())
    );
    assert!(matches!(
        b.history("nobody"),
        Err(Error::UnknownUser { .. })
    ));
    // Nothing per-user is in the node's own store.
    assert!(a.users().next().unwrap().is_err());
    let stats = a.stats().unwrap();
    assert_eq!(
        stats.cluster_namespace,
        Some(common::cluster::namespace("shared"))
    );
    assert_eq!((stats.users, stats.interactions), (0, 0));

    // No model: popularity (this node's counts), never a history item.
    let r = a.recommend("u0", 10).unwrap();
    assert_eq!(r.source, Source::Popularity);
    assert!(!r.items.is_empty());
    let seen = common::history_keys(&h);
    assert!(common::keys(&r).iter().all(|k| !seen.contains(k)));

    // A model on node a: wait_idle refreshes every user on this thread; node b (same model
    // attached) serves the lists as current.
    bundle::attach(&a);
    bundle::attach(&b);
    assert!(a.wait_idle_timeout(Duration::from_secs(120)).unwrap());
    for u in 0..6 {
        let user = format!("u{u}");
        let got = b.recommend(&user, 10).unwrap();
        assert_eq!((got.source, got.stale), (Source::Model, false), "{user}");
        assert_eq!(
            common::keys(&got),
            common::keys(&a.generate(&user, 10).unwrap()),
            "{user}"
        );
    }

    // A new record through b: stale on both nodes until refreshed, then current again.
    let new = Interaction::new("u2", keys[600].as_str(), 1_000);
    b.record_interactions(std::slice::from_ref(&new)).unwrap();
    let stale = a.recommend("u2", 10).unwrap();
    assert!(stale.stale && stale.source == Source::Model);
    assert!(!common::keys(&stale).contains(&keys[600].as_str()));
    assert!(b.wait_idle_timeout(Duration::from_secs(60)).unwrap());
    let fresh = a.recommend("u2", 10).unwrap();
    assert!(!fresh.stale);
    assert_eq!(fresh.history_version, stale.history_version + 1);

    // Another model on node a: its read of an old list is stale and asks for a refresh
    // (no record happened, so only the read can); after it, the lists carry the new id.
    let swap = common::tempdir();
    let renamed = bundle::renamed_bundle(swap.path(), "ml-100k-renamed");
    a.attach_model(&renamed, ModelOptions::new()).unwrap();
    let old = a.recommend("u4", 10).unwrap();
    assert!(old.stale, "a list of another model is never current");
    assert!(a.wait_idle_timeout(Duration::from_secs(60)).unwrap());
    let new_list = a.recommend("u4", 10).unwrap();
    assert!(!new_list.stale);
    assert_eq!(new_list.stamps.unwrap().model_id, "ml-100k-renamed");

    // refresh / refresh_now through the facade.
    assert!(matches!(
        a.refresh(&["nobody"]),
        Err(Error::UnknownUser { .. })
    ));
    a.refresh(&["u5"]).unwrap();
    let now = a.refresh_now("u5").unwrap();
    assert_eq!((now.source, now.stale), (Source::Model, false));
    assert!(a.wait_idle_timeout(Duration::from_secs(60)).unwrap());
    common::assert_clean(&a);
    common::assert_clean(&b);
}

#[test]
fn the_in_process_refresh_threads_consume_the_cluster_queue() {
    let dir = common::tempdir();
    let db = node(dir.path(), "threads", 2);
    bundle::attach(&db);
    db.record_interactions(&bundle::synthetic_histories(20, 5, 11))
        .unwrap();
    let started = Instant::now();
    let users: Vec<String> = (0..20).map(|u| format!("u{u}")).collect();
    loop {
        let current = users
            .iter()
            .filter(|u| {
                let r = db.recommend(u, 10).unwrap();
                r.source == Source::Model && !r.stale
            })
            .count();
        if current == users.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {current} of {} lists current after 120 s",
            users.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = db.refresh_stats();
    assert!(s.lists_written >= 20, "{s:?}");
    db.close().unwrap();
}

#[test]
fn bad_cluster_settings_are_refused_at_open() {
    let dir = common::tempdir();
    let mut bad = cluster_config("bad");
    bad.namespace = "a b".into();
    let got = Config::new(dir.path()).cluster(bad).open();
    assert!(matches!(got, Err(Error::InvalidArgument(_))), "{got:?}");
    let mut dead = ClusterConfig::new(["redis://127.0.0.1:1"]);
    dead.namespace = "dead".into();
    let got = Config::new(dir.path()).cluster(dead).open();
    assert!(matches!(got, Err(Error::Cluster(_))), "{got:?}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "a failed connect created nothing"
    );

    // A database with local histories is not silently shadowed by a cluster.
    let local = bundle::open_with_catalog(Config::new(dir.path()).refresh_workers(0));
    local
        .record_interactions(&bundle::synthetic_histories(1, 2, 1))
        .unwrap();
    local.close().unwrap();
    let got = Config::new(dir.path())
        .cluster(cluster_config("shadow"))
        .open();
    match got {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("histories"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn check_reports_damaged_cluster_state_and_a_foreign_catalog() {
    let dir = common::tempdir();
    let a = node(dir.path(), "check", 0);
    bundle::attach(&a);
    a.record_interactions(&bundle::synthetic_histories(3, 6, 2))
        .unwrap();
    assert!(a.wait_idle_timeout(Duration::from_secs(60)).unwrap());
    let report = a.check().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!((report.users, report.interactions), (3, 18));

    // u0's list written into u1 under u1's current stamps: "current" by its nonce, but computed
    // from another history.
    let tier = common::cluster::tier("check", |_| {});
    let (list, _) = tier.read("u0", 0).unwrap().list.unwrap();
    let keys = bundle::item_keys();
    a.record_interactions(&[Interaction::new("u1", keys[700].as_str(), 99)])
        .unwrap(); // u1 at version 2, u0's list at version 1
    let u1 = tier.history("u1").unwrap().unwrap();
    assert!(tier
        .write_list("u1", u1.version, u1.nonce, 0, &list)
        .unwrap());
    let problems = a.check().unwrap().problems;
    assert!(
        problems.iter().any(|p| p.starts_with("C3 user \"u1\"")),
        "{problems:?}"
    );

    // A node opened from an empty directory gets the catalog from the cluster's catalog log,
    // so its check is clean; a history naming an item id no node's catalog holds (written
    // past the facade) is reported.
    let other = common::tempdir();
    let b = Config::new(other.path())
        .refresh_workers(0)
        .cluster(cluster_config("check"))
        .open()
        .unwrap();
    tier.record(
        "u9",
        &[convergedb::cluster::ClusterEntry {
            item_id: 1 << 40,
            timestamp: 5,
            kind: 0,
            weight: 1.0,
        }],
        1,
    )
    .unwrap();
    let problems = b.check().unwrap().problems;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("C1 ") && p.contains("catalogs differ")),
        "{problems:?}"
    );
}
