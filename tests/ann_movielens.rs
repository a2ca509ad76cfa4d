//! Recall@10 of the ANN index against brute force on real item vectors: MovieLens-100K
//! behavioural vectors (`embed_interactions`), every item's vector used as a query.
//! Needs $CONVERGEDB_ML100K (scripts/test sets it); skips with a message otherwise.

mod common;

use std::path::PathBuf;

use common::vectors::{exact_top_k, recall};
use common::{assert_clean, fresh};
use convergedb::import::{self, ImportOptions};

#[test]
fn movielens_item_vectors_recall_at_10() {
    let Some(dir) = std::env::var_os("CONVERGEDB_ML100K").map(PathBuf::from) else {
        eprintln!("SKIPPED movielens_item_vectors_recall_at_10: set CONVERGEDB_ML100K (scripts/test does)");
        return;
    };
    let (_tmp, db) = fresh();
    import::movielens(&db, &dir, &ImportOptions::default()).unwrap();
    db.embed_interactions("behaviour", 64, 42).unwrap();
    let info = db.build_ann("behaviour").unwrap();
    assert_eq!(info.live, 1682);
    let keys: Vec<String> = (1..=1682).map(|i| i.to_string()).collect();
    let vectors: Vec<Vec<f32>> = keys
        .iter()
        .map(|k| db.get_item(k).unwrap().unwrap().vectors["behaviour"].clone())
        .collect();
    let mut total = 0.0;
    for q in &vectors {
        let found: Vec<usize> = db
            .recommend_by_vector("behaviour", q, 10)
            .unwrap()
            .iter()
            .map(|s| keys.iter().position(|k| *k == s.key).unwrap())
            .collect();
        total += recall(&found, &exact_top_k(&vectors, q, 10));
    }
    let mean = total / vectors.len() as f64;
    eprintln!(
        "ML-100K recall@10 = {mean:.4} over {} queries",
        vectors.len()
    );
    assert!(mean >= 0.95, "recall@10 = {mean:.4}");
    assert_clean(&db);
}
