//! The leave-one-out split of the training pipeline (models/ml100k/split.json, written by
//! training/convergedb_train/data.py) agrees with the histories the database keeps: for every
//! user, the last item of the stored history is the test item and the one before it the
//! validation item (chronological, ties in file order, on both sides).
//!
//! Needs MovieLens-100K ($CONVERGEDB_ML100K, set by ./scripts/test); skips with a message when
//! it is absent.

mod common;

use std::path::{Path, PathBuf};

use convergedb::import::{self, ImportOptions};
use serde_json::Value;

#[test]
fn python_and_rust_agree_on_the_ml100k_split() {
    let Some(dir) = std::env::var_os("CONVERGEDB_ML100K").map(PathBuf::from) else {
        eprintln!("skipped: set CONVERGEDB_ML100K to the ml-100k folder (./scripts/test does)");
        return;
    };
    let split: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ml100k/split.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let (_tmp, db) = common::fresh();
    import::movielens(&db, &dir, &ImportOptions::default()).unwrap();
    let users = split["users"].as_object().unwrap();
    assert_eq!(users.len() as u64, db.stats().unwrap().users);
    let mut differ = Vec::new();
    for (user, s) in users {
        let h = db.history(user).unwrap();
        let n = h.entries.len();
        assert!(n >= 3, "user {user} has {n} interactions");
        let (valid, test) = (&h.entries[n - 2].item, &h.entries[n - 1].item);
        if s["test"].as_str() != Some(test) || s["valid"].as_str() != Some(valid) {
            differ.push(format!(
                "user {user}: rust valid {valid} test {test}, python {s}"
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} users differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
}
