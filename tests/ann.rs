//! The ANN layer end to end: recall against brute force, routing of `recommend`, deletes and
//! updates (tombstones, rebuild past the threshold), bad input. Each test checks invariants after.

mod common;

use common::vectors::{exact_top_k, mixture, recall};
use common::{assert_clean, tempdir};
use convergedb::{AnnOrigin, Config, Error, Interaction, Item, Source};

fn items_with(vectors: &[Vec<f32>]) -> Vec<Item> {
    vectors
        .iter()
        .enumerate()
        .map(|(i, v)| Item::new(format!("i{i}")).vector("emb", v.clone()))
        .collect()
}

fn index_of(key: &str) -> usize {
    key[1..].parse().unwrap()
}

#[test]
fn recall_at_10_against_brute_force() {
    let dir = tempdir();
    let db = Config::new(dir.path()).open().unwrap();
    let vectors = mixture(5_000, 32, 50, 7);
    db.put_items(&items_with(&vectors)).unwrap();
    let info = db.build_ann("emb").unwrap();
    assert_eq!((info.points, info.live, info.tombstones), (5_000, 5_000, 0));
    let queries = mixture(200, 32, 50, 8);
    let mut total = 0.0;
    for q in &queries {
        let found: Vec<usize> = db
            .recommend_by_vector("emb", q, 10)
            .unwrap()
            .iter()
            .map(|s| index_of(&s.key))
            .collect();
        assert_eq!(found.len(), 10);
        total += recall(&found, &exact_top_k(&vectors, q, 10));
    }
    let mean = total / queries.len() as f64;
    assert!(
        mean >= 0.95,
        "recall@10 = {mean:.3} at the default ef_search"
    );
    assert_clean(&db);
}

#[test]
fn recommend_uses_ann_with_history_and_popularity_without() {
    let dir = tempdir();
    let db = Config::new(dir.path()).open().unwrap();
    // Two tight groups: a user who saw group A gets the rest of group A.
    let mut items = Vec::new();
    for i in 0..20 {
        let x = i as f32 * 0.01;
        items.push(Item::new(format!("a{i}")).vector("emb", vec![1.0, x, 0.0]));
        items.push(Item::new(format!("b{i}")).vector("emb", vec![0.0, x, 1.0]));
    }
    db.put_items(&items).unwrap();
    db.record_interactions(&[
        Interaction::new("alice", "a0", 1),
        Interaction::new("alice", "a1", 2),
        Interaction::new("bob", "b0", 1),
        Interaction::new("bob", "b5", 2),
        Interaction::new("carol", "b5", 3),
    ])
    .unwrap();
    // No index yet: popularity.
    assert_eq!(db.recommend("alice", 5).unwrap().source, Source::Popularity);

    db.build_ann("emb").unwrap();
    let rec = db.recommend("alice", 5).unwrap();
    assert_eq!(rec.source, Source::Ann);
    assert_eq!(rec.items.len(), 5);
    for s in &rec.items {
        assert!(s.key.starts_with('a'), "{rec:?}");
        assert!(
            s.key != "a0" && s.key != "a1",
            "history not excluded: {rec:?}"
        );
        assert!(s.score > 0.9);
    }
    // No history: popularity, b5 first (two interactions).
    let rec = db.recommend("nobody", 3).unwrap();
    assert_eq!(rec.source, Source::Popularity);
    assert_eq!(rec.items[0].key, "b5");
    assert_clean(&db);
}

#[test]
fn min_history_sends_short_histories_to_popularity() {
    let dir = tempdir();
    let db = Config::new(dir.path()).ann_min_history(3).open().unwrap();
    db.put_items(&items_with(&mixture(50, 8, 5, 1))).unwrap();
    db.build_ann("emb").unwrap();
    db.record_interactions(&[
        Interaction::new("u", "i1", 1),
        Interaction::new("u", "i2", 2),
    ])
    .unwrap();
    assert_eq!(db.recommend("u", 5).unwrap().source, Source::Popularity);
    db.record_interactions(&[Interaction::new("u", "i3", 3)])
        .unwrap();
    assert_eq!(db.recommend("u", 5).unwrap().source, Source::Ann);
}

#[test]
fn deleted_and_updated_items_follow_the_store() {
    let dir = tempdir();
    // A high threshold: this test watches tombstones accumulate.
    let db = Config::new(dir.path())
        .ann_rebuild_tombstone_ratio(0.9)
        .open()
        .unwrap();
    let vectors = mixture(500, 16, 10, 3);
    db.put_items(&items_with(&vectors)).unwrap();
    db.build_ann("emb").unwrap();

    // Delete i0..i49: a query at a deleted item's vector never returns a deleted item.
    let deleted: Vec<String> = (0..50).map(|i| format!("i{i}")).collect();
    let refs: Vec<&str> = deleted.iter().map(String::as_str).collect();
    db.delete_items(&refs).unwrap();
    for q in &vectors[..50] {
        for s in db.recommend_by_vector("emb", q, 20).unwrap() {
            assert!(index_of(&s.key) >= 50, "deleted item {} returned", s.key);
        }
    }
    // Move i100 far away: it is found at its new place, not at its old one.
    let far = vec![100.0; 16];
    db.put_vectors("emb", &[("i100".into(), far.clone())])
        .unwrap();
    let top = db.recommend_by_vector("emb", &far, 1).unwrap();
    assert_eq!(top[0].key, "i100");
    let info = &db.stats().unwrap().ann[0];
    assert_eq!((info.points, info.tombstones, info.live), (501, 51, 450));
    // Re-putting the same vector is not an update.
    db.put_vectors("emb", &[("i100".into(), far)]).unwrap();
    assert_eq!(db.stats().unwrap().ann[0].tombstones, 51);
    // Removing the vector through put_items (no vectors given) tombstones it too.
    db.put_items(&[Item::new("i101").title("no vector now")])
        .unwrap();
    assert_eq!(db.stats().unwrap().ann[0].live, 449);
    // A revived item comes back.
    db.put_items(&[Item::new("i0").vector("emb", vectors[0].clone())])
        .unwrap();
    let top = db.recommend_by_vector("emb", &vectors[0], 1).unwrap();
    assert_eq!(top[0].key, "i0");
    assert_clean(&db);
}

#[test]
fn tombstones_past_the_threshold_trigger_a_rebuild() {
    let dir = tempdir();
    let db = Config::new(dir.path())
        .ann_rebuild_tombstone_ratio(0.2)
        .open()
        .unwrap();
    db.put_items(&items_with(&mixture(100, 8, 4, 9))).unwrap();
    db.build_ann("emb").unwrap();
    let keys: Vec<String> = (0..15).map(|i| format!("i{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    db.delete_items(&refs).unwrap();
    let info = db.stats().unwrap().ann[0].clone();
    assert_eq!((info.points, info.tombstones), (100, 15), "{info:?}");
    // 21 tombstones among 100 points pass 20%: that write rebuilds the index.
    db.delete_items(&["i20", "i21", "i22", "i23", "i24", "i25"])
        .unwrap();
    let info = db.stats().unwrap().ann[0].clone();
    assert_eq!((info.points, info.tombstones), (79, 0), "{info:?}");
    assert_eq!(info.generation, 2);
    assert_eq!(info.origin, AnnOrigin::Rebuilt);
    assert!(info.rebuild_reason.unwrap().contains("tombstones"));
    assert_clean(&db);
}

#[test]
fn a_maintained_vector_is_indexed_from_its_first_vectors() {
    let dir = tempdir();
    let db = Config::new(dir.path()).ann_maintain("emb").open().unwrap();
    assert!(db.stats().unwrap().ann.is_empty());
    db.put_items(&items_with(&mixture(30, 4, 3, 2))).unwrap();
    let info = &db.stats().unwrap().ann[0];
    assert_eq!((info.vector.as_str(), info.live), ("emb", 30));
    db.put_items(&[Item::new("new").vector("emb", vec![9.0, 9.0, 9.0, 9.0])])
        .unwrap();
    let top = db
        .recommend_by_vector("emb", &[9.0, 9.0, 9.0, 9.0], 1)
        .unwrap();
    assert_eq!(top[0].key, "new");
    assert!(db.drop_ann("emb").unwrap());
    assert!(db.stats().unwrap().ann.is_empty());
    assert_clean(&db);
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let dir = tempdir();
    let err = Config::new(dir.path())
        .ann_max_nb_connection(257)
        .open()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("max_nb_connection"), "{err}");
    for bad in [
        Config::new(dir.path()).ann_ef_search(0),
        Config::new(dir.path()).ann_rebuild_tombstone_ratio(f64::NAN),
        Config::new(dir.path()).ann_min_history(0),
    ] {
        assert!(matches!(bad.open(), Err(Error::InvalidArgument(_))));
    }

    let db = Config::new(dir.path()).open().unwrap();
    let err = db.build_ann("emb").unwrap_err();
    assert!(matches!(err, Error::UnknownVector { .. }), "{err}");
    db.put_items(&items_with(&mixture(10, 4, 2, 1))).unwrap();
    let err = db.recommend_by_vector("emb", &[1.0; 4], 3).unwrap_err();
    assert!(matches!(err, Error::NoAnnIndex { .. }), "{err}");
    assert!(err.to_string().contains("ann-build"), "{err}");
    db.build_ann("emb").unwrap();
    let err = db.recommend_by_vector("emb", &[1.0; 3], 3).unwrap_err();
    assert!(err.to_string().contains("dimension 3"), "{err}");
    let err = db
        .recommend_by_vector("emb", &[1.0, f32::NAN, 0.0, 0.0], 3)
        .unwrap_err();
    assert!(err.to_string().contains("NaN"), "{err}");
    let err = db.recommend_by_vector("emb", &[1.0; 4], 0).unwrap_err();
    assert!(matches!(err, Error::InvalidK { .. }), "{err}");
    assert!(!db.drop_ann("other").unwrap());
    assert_clean(&db);
}
