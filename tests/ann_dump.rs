//! ANN dumps: a reopened database loads its dump and answers exactly as before; a corrupt,
//! truncated, missing or mismatched dump is never loaded: the index is rebuilt from the store and
//! the reason is reported in `stats()`. Writes made after the dump are caught up on open.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::assert_clean;
use common::tempdir;
use common::vectors::mixture;
use convergedb::{AnnOrigin, Config, Db, Item};

fn build(dir: &Path) -> (Db, Vec<Vec<f32>>) {
    let db = Config::new(dir).open().unwrap();
    let vectors = mixture(1_000, 16, 20, 11);
    let items: Vec<Item> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| Item::new(format!("i{i}")).vector("emb", v.clone()))
        .collect();
    db.put_items(&items).unwrap();
    db.build_ann("emb").unwrap();
    (db, vectors)
}

fn answers(db: &Db, queries: &[Vec<f32>]) -> Vec<Vec<(String, f64)>> {
    queries
        .iter()
        .map(|q| {
            db.recommend_by_vector("emb", q, 10)
                .unwrap()
                .into_iter()
                .map(|s| (s.key, s.score))
                .collect()
        })
        .collect()
}

/// The dump file of `dir` ending in `suffix`.
fn dump_file(dir: &Path, suffix: &str) -> PathBuf {
    fs::read_dir(dir.join("ann"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_str().unwrap().ends_with(suffix))
        .unwrap_or_else(|| panic!("no {suffix} file"))
}

fn reopen_info(dir: &Path) -> (Db, convergedb::AnnInfo) {
    let db = Config::new(dir).open().unwrap();
    let info = db.stats().unwrap().ann[0].clone();
    (db, info)
}

#[test]
fn a_reloaded_dump_answers_identically() {
    let dir = tempdir();
    let (db, vectors) = build(dir.path());
    let queries = mixture(50, 16, 20, 12);
    let before = answers(&db, &queries);
    let _ = vectors;
    db.close().unwrap();
    let (db, info) = reopen_info(dir.path());
    assert_eq!(info.origin, AnnOrigin::Loaded, "{info:?}");
    assert_eq!(info.rebuild_reason, None);
    assert_eq!(answers(&db, &queries), before);
    assert_clean(&db);
}

#[test]
fn writes_after_the_dump_are_caught_up_on_open() {
    let dir = tempdir();
    let (db, vectors) = build(dir.path());
    db.delete_items(&["i0"]).unwrap();
    db.put_items(&[Item::new("late").vector("emb", vec![50.0; 16])])
        .unwrap();
    db.close().unwrap();
    let (db, info) = reopen_info(dir.path());
    assert_eq!(info.origin, AnnOrigin::Loaded);
    let top = db.recommend_by_vector("emb", &vectors[0], 5).unwrap();
    assert!(top.iter().all(|s| s.key != "i0"), "{top:?}");
    let top = db.recommend_by_vector("emb", &[50.0; 16], 1).unwrap();
    assert_eq!(top[0].key, "late");
    assert_eq!(info.live, 1_000);
    assert_clean(&db);
}

/// Damages the dump with `damage`, reopens, and expects a rebuild whose reason contains `why`.
fn expect_rebuild(damage: impl FnOnce(&Path), why: &str) {
    let dir = tempdir();
    let (db, _) = build(dir.path());
    let queries = mixture(20, 16, 20, 13);
    let before = answers(&db, &queries);
    db.close().unwrap();
    damage(dir.path());
    let (db, info) = reopen_info(dir.path());
    assert_eq!(info.origin, AnnOrigin::Rebuilt, "{info:?}");
    let reason = info.rebuild_reason.clone().unwrap();
    assert!(reason.contains(why), "reason {reason:?} lacks {why:?}");
    assert_eq!(info.generation, 2);
    assert_eq!(info.live, 1_000);
    // The rebuilt index answers; results may differ slightly from the old graph's.
    let after = answers(&db, &queries);
    let same = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a.first().map(|x| &x.0) == b.first().map(|x| &x.0))
        .count();
    assert!(same >= 18, "{same} of 20 queries agree on the nearest item");
    assert_clean(&db);
    db.close().unwrap();
    // The rebuild wrote a fresh dump: the next open loads it.
    let (_db, info) = reopen_info(dir.path());
    assert_eq!(info.origin, AnnOrigin::Loaded, "{info:?}");
}

#[test]
fn a_corrupt_graph_file_is_rebuilt() {
    expect_rebuild(
        |dir| {
            let path = dump_file(dir, ".hnsw.graph");
            let mut bytes = fs::read(&path).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xFF;
            fs::write(&path, bytes).unwrap();
        },
        "checksum",
    );
}

#[test]
fn a_truncated_data_file_is_rebuilt() {
    expect_rebuild(
        |dir| {
            let path = dump_file(dir, ".hnsw.data");
            let len = fs::metadata(&path).unwrap().len();
            fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(len / 3)
                .unwrap();
        },
        "bytes, the manifest says",
    );
}

#[test]
fn a_missing_ids_file_is_rebuilt() {
    expect_rebuild(
        |dir| fs::remove_file(dump_file(dir, ".ids")).unwrap(),
        ".ids",
    );
}

#[test]
fn a_dump_from_another_database_is_not_loaded() {
    // Same names, same sizes, other bytes: another database's dump copied over this one's.
    let other = tempdir();
    {
        let db = Config::new(other.path()).open().unwrap();
        let vectors = mixture(1_000, 16, 20, 99);
        let items: Vec<Item> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| Item::new(format!("i{i}")).vector("emb", v.clone()))
            .collect();
        db.put_items(&items).unwrap();
        db.build_ann("emb").unwrap();
    }
    let other_path = other.path().to_path_buf();
    expect_rebuild(
        move |dir| {
            for suffix in [".hnsw.graph", ".hnsw.data", ".ids"] {
                fs::copy(dump_file(&other_path, suffix), dump_file(dir, suffix)).unwrap();
            }
        },
        "",
    );
}

#[test]
fn a_dump_keeps_its_parameters_until_the_next_build() {
    let dir = tempdir();
    let (db, _) = build(dir.path());
    db.close().unwrap();
    let db = Config::new(dir.path())
        .ann_max_nb_connection(8)
        .open()
        .unwrap();
    let info = db.stats().unwrap().ann[0].clone();
    assert_eq!(info.origin, AnnOrigin::Loaded);
    assert_eq!(info.max_nb_connection, 16);
    let info = db.build_ann("emb").unwrap();
    assert_eq!(info.max_nb_connection, 8);
    assert_clean(&db);
}

#[test]
fn old_generations_are_deleted_after_the_switch() {
    let dir = tempdir();
    let (db, _) = build(dir.path());
    db.build_ann("emb").unwrap();
    let info = &db.stats().unwrap().ann[0];
    assert_eq!(info.generation, 2);
    let names: Vec<String> = fs::read_dir(dir.path().join("ann"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().all(|n| n.contains("-g2.")), "{names:?}");
    db.drop_ann("emb").unwrap();
    assert_eq!(fs::read_dir(dir.path().join("ann")).unwrap().count(), 0);
    db.close().unwrap();
    let db = Config::new(dir.path()).open().unwrap();
    assert!(db.stats().unwrap().ann.is_empty());
}
