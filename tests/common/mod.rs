//! Shared helpers for the integration tests: temporary databases, snapshots of the observable
//! state, and raw access to the sled files for the corruption tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use convergedb::{Config, Db, History, Item, Recommendation, Stats};
use tempfile::TempDir;

pub mod bundle;
pub mod cluster;
pub mod vectors;

/// A fresh temporary directory.
pub fn tempdir() -> TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// Opens (or creates) the database in `dir` with the default configuration.
pub fn open(dir: &Path) -> Db {
    Config::new(dir).open().expect("open the database")
}

/// A fresh database in its own temporary directory (keep the `TempDir` alive).
pub fn fresh() -> (TempDir, Db) {
    let dir = tempdir();
    let db = open(dir.path());
    (dir, db)
}

/// Asserts that `check()` finds no problem.
#[track_caller]
pub fn assert_clean(db: &Db) {
    let report = db.check().expect("check() runs");
    assert!(
        report.is_clean(),
        "check() found problems: {:#?}",
        report.problems
    );
}

/// The parts of `Stats` that describe the content (not the disk size or the handle).
#[derive(Clone, Debug, PartialEq)]
pub struct Content {
    pub items: u64,
    pub deleted_items: u64,
    pub users: u64,
    pub interactions: u64,
    pub interactions_recorded: u64,
    pub catalog_version: u64,
    pub vector_dims: BTreeMap<String, usize>,
    pub kinds: Vec<String>,
}

impl From<Stats> for Content {
    fn from(s: Stats) -> Self {
        Content {
            items: s.items,
            deleted_items: s.deleted_items,
            users: s.users,
            interactions: s.interactions,
            interactions_recorded: s.interactions_recorded,
            catalog_version: s.catalog_version,
            vector_dims: s.vector_dims,
            kinds: s.kinds,
        }
    }
}

/// The content counters of `stats()`.
pub fn content(db: &Db) -> Content {
    db.stats().expect("stats()").into()
}

/// Everything a client can observe about a set of items and users.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub content: Content,
    pub items: Vec<(String, Option<Item>, Option<u64>)>,
    pub histories: Vec<(String, Option<History>)>,
    pub recommendations: Vec<Recommendation>,
}

/// Reads every listed item and user, and the recommendations of every user (k = 50).
pub fn snapshot(db: &Db, items: &[&str], users: &[&str]) -> Snapshot {
    Snapshot {
        content: content(db),
        items: items
            .iter()
            .map(|k| {
                (
                    k.to_string(),
                    db.get_item(k).expect("get_item"),
                    db.item_id(k).expect("item_id"),
                )
            })
            .collect(),
        histories: users
            .iter()
            .map(|u| {
                let h = match db.history(u) {
                    Ok(h) => Some(h),
                    Err(convergedb::Error::UnknownUser { .. }) => None,
                    Err(e) => panic!("history({u:?}): {e}"),
                };
                (u.to_string(), h)
            })
            .collect(),
        recommendations: users
            .iter()
            .map(|u| db.recommend(u, 50).expect("recommend"))
            .collect(),
    }
}

/// The item keys of a recommendation, best first.
pub fn keys(rec: &Recommendation) -> Vec<&str> {
    rec.items.iter().map(|i| i.key.as_str()).collect()
}

/// The item keys of a history, oldest first.
pub fn history_keys(h: &History) -> Vec<&str> {
    h.entries.iter().map(|e| e.item.as_str()).collect()
}

/// Opens the database files with sled directly (the convergedb handle must be closed), runs
/// `f` on the named tree, and flushes.
pub fn with_raw_tree<T>(dir: &Path, tree: &str, f: impl FnOnce(&sled::Tree) -> T) -> T {
    let raw = raw_open(dir);
    let t = raw.open_tree(tree).expect("open tree");
    let out = f(&t);
    raw.flush().expect("flush raw sled");
    out
}

/// `sled::open` on `dir`. sled releases the file lock of a just-dropped handle asynchronously
/// (spacejam/sled#1234), so a lock error is retried for a bounded while.
pub fn raw_open(dir: &Path) -> sled::Db {
    let mut attempts = 0;
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && attempts < 400 =>
            {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => panic!("sled::open({}): {e}", dir.display()),
        }
    }
}

/// Overwrites `tree[key]` with `value` through raw sled; panics if the key did not exist.
pub fn overwrite_raw(dir: &Path, tree: &str, key: &[u8], value: &[u8]) {
    with_raw_tree(dir, tree, |t| {
        let old = t.insert(key, value).expect("raw insert");
        assert!(
            old.is_some(),
            "tree {tree:?} had no key {key:?} to overwrite"
        );
    });
}

/// Reads `tree[key]` through raw sled.
pub fn read_raw(dir: &Path, tree: &str, key: &[u8]) -> Option<Vec<u8>> {
    with_raw_tree(dir, tree, |t| {
        t.get(key).expect("raw get").map(|v| v.to_vec())
    })
}

/// A small catalog item with text, an attribute and one vector of dimension 4.
pub fn item(key: &str) -> Item {
    let seed = key.bytes().map(f32::from).sum::<f32>();
    Item::new(key)
        .title(format!("Title of {key}"))
        .description(format!("A description of {key}"))
        .attribute("genre", "test")
        .vector("emb", vec![seed, seed + 0.5, -seed, 1.0])
}
