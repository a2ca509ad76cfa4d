//! Goal: damage in stored numbers and cached lists is seen (issue 17, class 7): `check()`
//! reports NaN or infinite history weights (V1), vector values (V2) and cached scores (V3), and
//! a cached list that holds an item of the user's history (V4) is never served as current.
//! Method: a real database, closed, then one value edited through raw sled, then reopened.

mod common;

use std::path::Path;

use convergedb::{Config, Db, Interaction, Item, TokenizeOptions};

/// Replaces the only occurrence of `from` in `tree[key]` by `to`.
fn patch(dir: &Path, tree: &str, key: &[u8], from: &[u8], to: &[u8]) {
    let mut v = common::read_raw(dir, tree, key).expect("the record exists");
    let at: Vec<usize> = (0..=v.len() - from.len())
        .filter(|i| &v[*i..*i + from.len()] == from)
        .collect();
    assert_eq!(at.len(), 1, "pattern found {} times", at.len());
    v[at[0]..at[0] + from.len()].copy_from_slice(to);
    common::overwrite_raw(dir, tree, key, &v);
}

#[track_caller]
fn assert_reports(db: &Db, code: &str) -> String {
    let report = db.check().unwrap();
    let found: Vec<&String> = report
        .problems
        .iter()
        .filter(|p| p.starts_with(code))
        .collect();
    assert!(
        !found.is_empty(),
        "check() did not report {code}: {:?}",
        report.problems
    );
    found[0].clone()
}

#[test]
fn a_nan_history_weight_is_reported() {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    db.put_items(&[Item::new("a")]).unwrap();
    db.record_interactions(&[Interaction::new("u", "a", 1).weight(0.123)])
        .unwrap();
    db.close().unwrap();
    patch(
        dir.path(),
        "histories",
        b"u",
        &0.123f32.to_le_bytes(),
        &f32::NAN.to_le_bytes(),
    );
    let db = common::open(dir.path());
    let p = assert_reports(&db, "V1");
    assert!(p.contains("\"u\"") && p.contains("NaN"), "{p}");
}

#[test]
fn an_infinite_vector_value_is_reported() {
    let dir = common::tempdir();
    let db = common::open(dir.path());
    db.put_items(&[Item::new("a").vector("emb", vec![0.25, 0.123])])
        .unwrap();
    db.close().unwrap();
    let key: Vec<u8> = 1u64.to_be_bytes().iter().chain(b"emb").copied().collect();
    patch(
        dir.path(),
        "vectors",
        &key,
        &0.123f32.to_le_bytes(),
        &f32::INFINITY.to_le_bytes(),
    );
    let db = common::open(dir.path());
    let p = assert_reports(&db, "V2");
    assert!(p.contains("\"emb\"") && p.contains("inf"), "{p}");
}

/// A database whose user "u" has a current cached list (test generator, real beam search over
/// a real tokenization); returns the list's items and the user's history item.
fn with_cached_list(dir: &Path) -> (Vec<String>, String) {
    let db = Config::new(dir).refresh_workers(0).open().unwrap();
    let items: Vec<Item> = (0..12)
        .map(|i| Item::new(format!("i{i}")).vector("v", vec![i as f32, (i % 3) as f32 + 0.5]))
        .collect();
    db.put_items(&items).unwrap();
    let mut opts = TokenizeOptions::new("v");
    opts.levels = 2;
    opts.codes = 4;
    opts.threads = 1;
    db.tokenize(&opts, None).unwrap();
    db.record_interactions(&[Interaction::new("u", "i0", 1)])
        .unwrap();
    db.attach_test_generator("gen-a").unwrap();
    db.wait_idle().unwrap();
    let rec = db.recommend("u", 5).unwrap();
    assert_eq!(rec.source, convergedb::Source::Model, "{rec:?}");
    assert!(!rec.stale);
    let keys = common::keys(&rec).iter().map(|k| k.to_string()).collect();
    common::assert_clean(&db);
    db.close().unwrap();
    (keys, "i0".to_string())
}

fn topk_ids(dir: &Path) -> (Vec<u8>, Vec<u64>, usize) {
    let v = common::read_raw(dir, "topk", b"u").unwrap();
    let m = v[25] as usize;
    let n_at = 26 + m;
    let n = u16::from_le_bytes([v[n_at], v[n_at + 1]]) as usize;
    let ids = (0..n)
        .map(|i| {
            let at = n_at + 2 + 8 * i;
            u64::from_le_bytes(v[at..at + 8].try_into().unwrap())
        })
        .collect();
    (v, ids, n_at + 2)
}

#[test]
fn a_nan_cached_score_is_reported() {
    let dir = common::tempdir();
    with_cached_list(dir.path());
    let (mut v, ids, ids_at) = topk_ids(dir.path());
    let score_at = ids_at + 8 * ids.len();
    v[score_at..score_at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    common::overwrite_raw(dir.path(), "topk", b"u", &v);
    let db = Config::new(dir.path()).refresh_workers(0).open().unwrap();
    let p = assert_reports(&db, "V3");
    assert!(p.contains("NaN"), "{p}");
}

#[test]
fn a_cached_list_holding_a_history_item_is_not_served_as_current() {
    let dir = common::tempdir();
    let (served, history_item) = with_cached_list(dir.path());
    assert!(!served.contains(&history_item));
    // Put the history's item (id 1: "i0") in place of the list's first item, keeping every
    // stamp: a damaged (or wrongly computed) list that still looks current.
    let (mut v, ids, ids_at) = topk_ids(dir.path());
    assert!(!ids.contains(&1));
    v[ids_at..ids_at + 8].copy_from_slice(&1u64.to_le_bytes());
    common::overwrite_raw(dir.path(), "topk", b"u", &v);

    let db = Config::new(dir.path()).refresh_workers(0).open().unwrap();
    let rec = db.recommend("u", 5).unwrap();
    assert!(
        !common::keys(&rec).contains(&history_item.as_str()),
        "the history item was served: {rec:?}"
    );
    assert!(
        rec.stale,
        "a list holding a history item was served as current"
    );
    let p = assert_reports(&db, "V4");
    assert!(p.contains("\"u\"") && p.contains("item 1"), "{p}");
    // The read queued the user; a refresh repairs the list.
    db.attach_test_generator("gen-a").unwrap();
    db.wait_idle().unwrap();
    let rec = db.recommend("u", 5).unwrap();
    assert!(!rec.stale && !common::keys(&rec).contains(&history_item.as_str()));
    common::assert_clean(&db);
}
