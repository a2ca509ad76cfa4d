//! Opening a real format-1 database (tests/fixtures/v1-db, written at commit 3737733 by
//! tests/fixtures/make_v1_fixture.rs.txt: the shipped ML-100K catalog and tokenization, 40 users
//! with 1-700 entries, late arrivals, kinds and weights, lists from the shipped model, three
//! users changed after their lists) upgrades it in place to chunked histories: every history,
//! version, list and queue entry is as it was, `check()` is clean, and an interrupted upgrade
//! carries on at the next open.

mod common;

use std::path::Path;

use convergedb::{Config, Db, Interaction};
use serde_json::Value;

fn fixture(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-db");
    std::fs::create_dir_all(to).unwrap();
    for name in ["conf", "db"] {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

fn expected() -> serde_json::Map<String, Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-expected.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["users"].as_object().unwrap().clone()
}

fn open(dir: &Path) -> Db {
    Config::new(dir)
        .create_if_missing(false)
        .refresh_workers(0)
        .open()
        .expect("the format-1 database opens (and upgrades)")
}

/// Every user's history and answer are what the format-1 build recorded.
fn assert_as_recorded(db: &Db) {
    let expected = expected();
    assert_eq!(expected.len(), 40);
    for (user, want) in &expected {
        let h = db.history(user).unwrap();
        assert_eq!(h.version, want["version"].as_u64().unwrap(), "{user}");
        assert_eq!(h.recorded, want["recorded"].as_u64().unwrap(), "{user}");
        let got: Vec<Value> = h
            .entries
            .iter()
            .map(|e| serde_json::json!([e.item, e.timestamp, e.kind, e.weight]))
            .collect();
        assert_eq!(&got, want["entries"].as_array().unwrap(), "{user}");
        let rec = db.recommend(user, 10).unwrap();
        assert_eq!(
            format!("{:?}", rec.source),
            want["source"].as_str().unwrap()
        );
        assert_eq!(rec.stale, want["stale"].as_bool().unwrap(), "{user}");
        let items: Vec<&str> = rec.items.iter().map(|i| i.key.as_str()).collect();
        let want_items: Vec<&str> = want["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(items, want_items, "{user}");
    }
    common::assert_clean(db);
}

#[test]
fn a_format_1_database_upgrades_in_place_and_keeps_everything() {
    let dir = common::tempdir();
    let path = dir.path().join("db");
    fixture(&path);
    let db = open(&path);
    assert_eq!(db.stats().unwrap().format_version, 2);
    assert_as_recorded(&db);
    // The three users changed after their lists are still queued for a refresh.
    for u in ["user-5", "user-6", "user-7"] {
        assert!(db.recommend(u, 10).unwrap().stale, "{u}");
    }
    db.close().unwrap();
    // Chunks exist (user-0 has 700 entries) and every head is format 2.
    common::with_raw_tree(&path, "histories", |t| {
        for kv in t.iter() {
            let (k, v) = kv.unwrap();
            assert_eq!(v[0], 2, "{:?}", String::from_utf8_lossy(&k));
        }
    });
    let chunks = common::with_raw_tree(&path, "history_chunks", |t| t.len());
    assert!(chunks >= 700 / 32, "{chunks} chunks");
    // Reopening is a no-op, and the upgraded histories take appends.
    let db = open(&path);
    assert_as_recorded(&db);
    let first_item = db.history("user-0").unwrap().entries[0].item.clone();
    db.record_interactions(&[Interaction::new("user-0", first_item, 99_999)])
        .unwrap();
    let h = db.history("user-0").unwrap();
    assert_eq!((h.entries.len(), h.version), (701, 3));
    common::assert_clean(&db);
}

#[test]
fn an_interrupted_upgrade_carries_on_at_the_next_open() {
    let dir = common::tempdir();
    let (old, path) = (dir.path().join("old"), dir.path().join("db"));
    fixture(&old);
    fixture(&path);
    let legacy = common::read_raw(&old, "histories", b"user-0").unwrap();
    assert_eq!(legacy[0], 1, "the fixture holds format-1 records");
    open(&path).close().unwrap();
    // Put the state of a crash midway back: one user still in format 1, the marker set.
    common::with_raw_tree(&path, "histories", |t| {
        t.insert("user-0", legacy.clone()).unwrap();
    });
    common::with_raw_tree(&path, "history_chunks", |t| {
        let keys: Vec<_> = t
            .scan_prefix(b"user-0\xff")
            .map(|kv| kv.unwrap().0)
            .collect();
        for k in keys {
            t.remove(k).unwrap();
        }
    });
    common::with_raw_tree(&path, "meta", |t| {
        t.insert("upgrade", b"histories 1->2".to_vec()).unwrap();
    });
    let db = open(&path);
    assert_as_recorded(&db);
    db.close().unwrap();
    assert!(common::read_raw(&path, "meta", b"upgrade").is_none());
}
