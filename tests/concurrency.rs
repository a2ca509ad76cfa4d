//! Goal: one database shared by reader and writer threads stays consistent: readers never see a
//! torn state or an unexpected error, and the final state is exactly what the writers did.
//! Method: 8 reader threads (recommend, history, get_item, stats, an occasional check()) and 2
//! writer threads (put_items + record_interactions; delete/re-put + record_interactions) share
//! clones of one Db for a fixed number of writer batches. Readers assert invariants that hold at
//! every commit (monotonic counters, recommendations disjoint from the history they were computed
//! against, whole items). At the end check() is clean and every count equals the writers' totals.
//! A second test has two writers fight over the same keys, where the only allowed errors are the
//! ones a lost race explains.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use common::{assert_clean, fresh, keys};
use convergedb::{Db, Error, Interaction, Item};

const BASE: usize = 50;
const BATCHES: usize = 300;
const USERS_PER_WRITER: usize = 20;
const FLIPS: usize = 10;
const DIM: usize = 8;
const READERS: usize = 8;

fn vector(seed: usize) -> Vec<f32> {
    (0..DIM).map(|j| (seed * DIM + j) as f32).collect()
}

fn base_key(i: usize) -> String {
    format!("base-{i}")
}

/// Writer 0: two new items per batch, then three interactions naming them.
fn writer_new_items(db: Db) {
    for i in 0..BATCHES {
        let (k0, k1) = (format!("w0-{i}-0"), format!("w0-{i}-1"));
        db.put_items(&[
            Item::new(&k0).title(&k0).vector("emb", vector(i)),
            Item::new(&k1).title(&k1).vector("emb", vector(i + 1)),
        ])
        .expect("writer 0 put_items");
        let user = format!("u0-{}", i % USERS_PER_WRITER);
        db.record_interactions(&[
            Interaction::new(&user, base_key(i % BASE), i as i64),
            Interaction::new(&user, &k0, i as i64),
            Interaction::new(&user, &k1, i as i64).kind("click"),
        ])
        .expect("writer 0 record_interactions");
    }
}

/// Writer 1: flips flip-(i % 10) alive (blocks of 10 batches) and dead (the next 10), and
/// records one interaction per batch on a base item, plus one on the flip item while it lives.
fn writer_flips(db: Db) {
    for i in 0..BATCHES {
        let key = format!("flip-{}", i % FLIPS);
        let user = format!("u1-{}", i % USERS_PER_WRITER);
        let mut events = vec![Interaction::new(&user, base_key((i * 7) % BASE), i as i64)];
        if (i / FLIPS).is_multiple_of(2) {
            db.put_items(&[Item::new(&key).title("flip").vector("emb", vector(999))])
                .expect("writer 1 put_items");
            events.push(Interaction::new(&user, &key, i as i64).weight(2.0));
        } else {
            assert_eq!(db.delete_items(&[&key]).expect("writer 1 delete"), 1);
        }
        db.record_interactions(&events)
            .expect("writer 1 record_interactions");
    }
}

#[derive(Default, Clone, Copy, PartialEq, PartialOrd, Debug)]
struct Seen {
    items_ever: u64,
    users: u64,
    interactions: u64,
    recorded: u64,
    catalog_version: u64,
}

fn reader(db: Db, id: usize, stop: Arc<AtomicBool>, ops: Arc<AtomicU64>) {
    let mut last = Seen::default();
    let mut n = 0usize;
    // Keep going until the writers are done, and do at least a few rounds in any case.
    while !stop.load(Ordering::Acquire) || n < 40 {
        n += 1;
        let user = match n % 3 {
            0 => format!("u0-{}", (n + id) % USERS_PER_WRITER),
            1 => format!("u1-{}", (n + id) % USERS_PER_WRITER),
            _ => "nobody".to_string(),
        };

        // recommend, then the history it was computed against.
        let rec = db.recommend(&user, 10).expect("recommend");
        assert!(rec.items.len() <= 10);
        let distinct: HashSet<&str> = keys(&rec).into_iter().collect();
        assert_eq!(distinct.len(), rec.items.len(), "duplicate items: {rec:?}");
        assert!(
            rec.items.windows(2).all(|w| w[0].score >= w[1].score),
            "not sorted by score: {rec:?}"
        );
        match db.history(&user) {
            Ok(h) => {
                assert!(h.version >= rec.history_version);
                assert!(h
                    .entries
                    .windows(2)
                    .all(|w| w[0].timestamp <= w[1].timestamp));
                if h.version == rec.history_version {
                    let seen: HashSet<&str> = h.entries.iter().map(|e| e.item.as_str()).collect();
                    assert!(
                        distinct.is_disjoint(&seen),
                        "recommended an item from the history: {rec:?} {h:?}"
                    );
                }
            }
            // A user the writers have not reached yet (or "nobody"): only then is it unknown,
            // and recommend must have seen no history either.
            Err(Error::UnknownUser { key }) => {
                assert_eq!(key, user);
                assert_eq!(rec.history_version, 0, "a user cannot disappear");
            }
            Err(e) => panic!("reader {id}: history({user}): {e}"),
        }

        // Whole items: a base item is always there; a writer item is all or nothing.
        let b = db
            .get_item(&base_key(n % BASE))
            .expect("get_item")
            .expect("base items are never deleted");
        assert_eq!(b.vectors["emb"], vector(n % BASE));
        let k = format!("w0-{}-{}", n % BATCHES, n % 2);
        if let Some(item) = db.get_item(&k).expect("get_item") {
            assert_eq!(item.title, k);
            assert_eq!(item.vectors["emb"], vector(n % BATCHES + n % 2));
        }
        if let Some(item) = db
            .get_item(&format!("flip-{}", n % FLIPS))
            .expect("get_item")
        {
            assert_eq!(
                (item.title.as_str(), item.vectors["emb"].len()),
                ("flip", DIM)
            );
        }

        // Counters never go back.
        let s = db.stats().expect("stats");
        let now = Seen {
            items_ever: s.items + s.deleted_items,
            users: s.users,
            interactions: s.interactions,
            recorded: s.interactions_recorded,
            catalog_version: s.catalog_version,
        };
        assert!(s.items >= BASE as u64);
        for (a, b, what) in [
            (last.items_ever, now.items_ever, "items ever"),
            (last.users, now.users, "users"),
            (last.interactions, now.interactions, "interactions"),
            (last.recorded, now.recorded, "recorded"),
            (last.catalog_version, now.catalog_version, "catalog_version"),
        ] {
            assert!(a <= b, "reader {id}: {what} went from {a} to {b}");
        }
        last = now;

        // Now and then, a full check in the middle of the writes.
        if id == 0 && n.is_multiple_of(100) {
            let report = db.check().expect("check");
            assert!(report.is_clean(), "{:#?}", report.problems);
        }
    }
    ops.fetch_add(n as u64, Ordering::Relaxed);
}

#[test]
fn readers_and_writers_share_one_database() {
    let (_dir, db) = fresh();
    let base: Vec<Item> = (0..BASE)
        .map(|i| {
            Item::new(base_key(i))
                .title("base")
                .vector("emb", vector(i))
        })
        .collect();
    db.put_items(&base).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..READERS)
        .map(|id| {
            let (db, stop, ops) = (db.clone(), stop.clone(), ops.clone());
            thread::spawn(move || reader(db, id, stop, ops))
        })
        .collect();
    let writers = [
        thread::spawn({
            let db = db.clone();
            move || writer_new_items(db)
        }),
        thread::spawn({
            let db = db.clone();
            move || writer_flips(db)
        }),
    ];
    let mut failures = Vec::new();
    for w in writers {
        if let Err(e) = w.join() {
            failures.push(e);
        }
    }
    stop.store(true, Ordering::Release);
    for r in readers {
        if let Err(e) = r.join() {
            failures.push(e);
        }
    }
    if let Some(e) = failures.into_iter().next() {
        std::panic::resume_unwind(e);
    }
    assert!(ops.load(Ordering::Relaxed) >= (READERS * 40) as u64);

    assert_clean(&db);
    let s = db.stats().unwrap();
    let flip_interactions = (BATCHES / 2) as u64; // one per batch of the "alive" blocks
    let interactions = 3 * BATCHES as u64 + BATCHES as u64 + flip_interactions;
    assert_eq!(s.items, (BASE + 2 * BATCHES) as u64);
    assert_eq!(
        s.deleted_items, FLIPS as u64,
        "300 batches end on a dead block"
    );
    assert_eq!(s.users, 2 * USERS_PER_WRITER as u64);
    assert_eq!(s.interactions, interactions);
    assert_eq!(s.interactions_recorded, interactions);
    assert_eq!(s.catalog_version, 1 + 2 * BATCHES as u64);
    assert_eq!(s.kinds, vec!["click"]);

    // Popularity holds every live item, and its scores add up to the interactions with live
    // items (the flip items are deleted).
    let all = db.recommend("nobody", 10_000).unwrap();
    assert_eq!(all.items.len(), BASE + 2 * BATCHES);
    assert!(!all.items.iter().any(|i| i.key.starts_with("flip-")));
    let total: f64 = all.items.iter().map(|i| i.score).sum();
    assert_eq!(total, (interactions - flip_interactions) as f64);

    // Per-user histories hold exactly what the writers recorded for them.
    let per_user = BATCHES / USERS_PER_WRITER;
    assert_eq!(db.history("u0-0").unwrap().entries.len(), 3 * per_user);
    let u1 = db.history("u1-0").unwrap();
    assert_eq!(
        u1.entries.len(),
        2 * per_user,
        "u1-0 writes in alive blocks only"
    );
    assert_eq!(u1.version, per_user as u64);
    assert!(u1
        .entries
        .iter()
        .filter(|e| e.item.starts_with("flip-"))
        .all(|e| !e.live));
}

#[test]
fn writers_racing_on_the_same_keys_fail_only_for_lost_races() {
    const KEYS: usize = 5;
    const ROUNDS: usize = 200;
    let (_dir, db) = fresh();
    let all: Vec<Item> = (0..KEYS).map(|k| Item::new(format!("k{k}"))).collect();
    db.put_items(&all).unwrap();

    let workers: Vec<_> = (0..2)
        .map(|w| {
            let db = db.clone();
            thread::spawn(move || {
                let mut recorded = 0u64;
                for i in 0..ROUNDS {
                    let key = format!("k{}", (i + w) % KEYS);
                    let user = format!("racer-{w}");
                    match i % 3 {
                        0 => match db.delete_items(&[&key]) {
                            Ok(1) => {}
                            // The other writer deleted it first.
                            Err(Error::DeletedItem { key: k }) => assert_eq!(k, key),
                            other => panic!("delete {key}: {other:?}"),
                        },
                        1 => {
                            db.put_items(&[Item::new(&key).title(format!("by {w}"))])
                                .expect("put_items never loses a race");
                        }
                        _ => match db
                            .record_interactions(&[Interaction::new(&user, &key, i as i64)])
                        {
                            Ok(()) => recorded += 1,
                            // Deleted by someone between our put and this call.
                            Err(Error::DeletedItem { key: k }) => assert_eq!(k, key),
                            other => panic!("record {key}: {other:?}"),
                        },
                    }
                }
                recorded
            })
        })
        .collect();
    let recorded: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();

    assert_clean(&db);
    let s = db.stats().unwrap();
    assert_eq!(
        s.items + s.deleted_items,
        KEYS as u64,
        "no key gets a second id"
    );
    assert_eq!(s.interactions, recorded);
    let histories: usize = (0..2)
        .filter_map(|w| db.history(&format!("racer-{w}")).ok())
        .map(|h| h.entries.len())
        .sum();
    assert_eq!(histories as u64, recorded);
}
