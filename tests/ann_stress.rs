//! Searches that run while items are inserted, updated and deleted return only live items
//! (invariant 6). Method: a writer deletes items and records each key once its delete returned;
//! readers take that set before each search and assert no result is in it.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::vectors::mixture;
use common::{assert_clean, tempdir};
use convergedb::{Config, Interaction, Item, Source};

#[test]
fn searches_during_writes_return_only_live_items() {
    let dir = tempdir();
    let db = Config::new(dir.path())
        .ann_rebuild_tombstone_ratio(0.3)
        .open()
        .unwrap();
    let vectors = mixture(2_000, 16, 20, 5);
    let items: Vec<Item> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| Item::new(format!("i{i}")).vector("emb", v.clone()))
        .collect();
    db.put_items(&items).unwrap();
    db.build_ann("emb").unwrap();
    db.record_interactions(&[Interaction::new("u", "i1999", 1)])
        .unwrap();

    let deleted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (db, deleted, done) = (db.clone(), deleted.clone(), done.clone());
            let queries = mixture(50, 16, 20, 100 + r);
            thread::spawn(move || {
                let mut searches = 0u64;
                while !done.load(Ordering::Relaxed) || searches < 100 {
                    let gone = deleted.lock().unwrap().clone();
                    let q = &queries[searches as usize % queries.len()];
                    for s in db.recommend_by_vector("emb", q, 10).unwrap() {
                        assert!(!gone.contains(&s.key), "deleted {} returned", s.key);
                    }
                    let rec = db.recommend("u", 10).unwrap();
                    assert_eq!(rec.source, Source::Ann);
                    for s in rec.items {
                        assert!(!gone.contains(&s.key), "deleted {} recommended", s.key);
                    }
                    searches += 1;
                }
                searches
            })
        })
        .collect();

    // Delete 800 items in small batches (passing the rebuild threshold on the way), insert new
    // ones and move others.
    for round in 0..80 {
        let batch: Vec<String> = (0..10).map(|j| format!("i{}", round * 10 + j)).collect();
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        db.delete_items(&refs).unwrap();
        deleted.lock().unwrap().extend(batch);
        let fresh: Vec<Item> = (0..5)
            .map(|j| {
                Item::new(format!("n{round}-{j}")).vector("emb", vectors[round * 5 + j].clone())
            })
            .collect();
        db.put_items(&fresh).unwrap();
        let moved = format!("i{}", 1000 + round);
        db.put_vectors("emb", &[(moved, vectors[round].clone())])
            .unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() >= 100);
    }
    let info = &db.stats().unwrap().ann[0];
    assert_eq!(info.live, 2_000 - 800 + 400);
    assert!(info.generation >= 2, "the threshold rebuild ran: {info:?}");
    assert_clean(&db);
}
