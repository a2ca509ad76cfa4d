//! Group commit: concurrent `record_interactions` callers share transactions and Sync flushes,
//! yet each call stays all-or-nothing on its own, is applied exactly once, and a bad batch in a
//! group fails alone.

mod common;

use std::sync::Arc;

use convergedb::{Config, Durability, Error, Interaction, Item};

const ITEMS: usize = 10;
const THREADS: usize = 4;
const CALLS: usize = 150;

fn open(dir: &std::path::Path, durability: Durability) -> convergedb::Db {
    let db = Config::new(dir).durability(durability).open().unwrap();
    let items: Vec<Item> = (0..ITEMS).map(|i| Item::new(format!("i{i}"))).collect();
    db.put_items(&items).unwrap();
    db
}

/// Runs `THREADS` writers of `CALLS` single-interaction calls each; writer 0 names an unknown
/// item in every third call. Returns the errors writer 0 saw.
fn hammer(db: &convergedb::Db) -> Vec<String> {
    let barrier = Arc::new(std::sync::Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (db, barrier) = (db.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let mut errors = Vec::new();
                for c in 0..CALLS {
                    let bad = t == 0 && c % 3 == 0;
                    let item = if bad {
                        "missing".to_string()
                    } else {
                        format!("i{}", c % ITEMS)
                    };
                    // Users shared between writers: "shared" gets every writer's calls.
                    let user = if c % 2 == 0 {
                        format!("t{t}")
                    } else {
                        "shared".to_string()
                    };
                    match db.record_interactions(&[Interaction::new(user, item, c as i64)]) {
                        Ok(()) => assert!(!bad, "a call naming an unknown item succeeded"),
                        Err(e @ Error::UnknownItem { .. }) if bad => errors.push(e.to_string()),
                        Err(e) => panic!("writer {t} call {c}: {e}"),
                    }
                }
                errors
            })
        })
        .collect();
    let mut errors = Vec::new();
    for t in threads {
        errors.extend(t.join().unwrap());
    }
    errors
}

fn assert_each_call_applied_once(db: &convergedb::Db, errors: &[String]) {
    let bad = (0..CALLS).filter(|c| c % 3 == 0).count();
    assert_eq!(errors.len(), bad);
    assert!(errors.iter().all(|e| e.contains("missing")));
    let mut total = 0;
    for t in 0..THREADS {
        let h = db.history(&format!("t{t}")).unwrap();
        let calls = (0..CALLS)
            .filter(|c| c % 2 == 0 && !(t == 0 && c % 3 == 0))
            .count();
        assert_eq!(h.recorded as usize, calls, "writer {t}");
        assert_eq!(h.version as usize, calls, "one version per call");
        total += calls;
    }
    let shared = db.history("shared").unwrap();
    let calls = THREADS * CALLS - total - bad;
    assert_eq!(shared.recorded as usize, calls);
    assert_eq!(shared.version as usize, calls);
    assert!(shared
        .entries
        .windows(2)
        .all(|w| w[0].timestamp <= w[1].timestamp));
    assert_eq!(
        db.stats().unwrap().interactions_recorded as usize,
        THREADS * CALLS - bad
    );
    common::assert_clean(db);
}

#[test]
fn sync_writers_share_flushes_and_each_call_lands_once() {
    let dir = common::tempdir();
    let db = open(dir.path(), Durability::Sync);
    let before = db.stats().unwrap();
    let errors = hammer(&db);
    let after = db.stats().unwrap();
    assert_each_call_applied_once(&db, &errors);
    let writes = (THREADS * CALLS - errors.len()) as u64;
    let flushes = after.sync_flushes - before.sync_flushes;
    // Without the shared flush every Sync call flushes once.
    assert!(
        flushes < writes,
        "{flushes} flushes for {writes} concurrent Sync writes: no flush was shared"
    );
    drop(db);
    // Everything acknowledged is there after a reopen.
    let db = common::open(dir.path());
    assert_each_call_applied_once(&db, &errors);
}

#[test]
fn buffered_writers_group_into_shared_transactions() {
    let dir = common::tempdir();
    let db = open(dir.path(), Durability::default());
    let errors = hammer(&db);
    assert_each_call_applied_once(&db, &errors);
}
