//! Goal: semantic IDs are owned by the database: trained deterministically, assigned to new
//! items in the same transaction, stable under one version (invariant 7), exactly mirrored by
//! `sid_items` and the trie (invariants 1 and 2), imported and exported losslessly, and bad
//! tokenizations are refused with clear errors.
//! Method: synthetic clustered catalogs through the public API, raw sled edits for damage, the
//! LETTER index of Amazon Instruments when ../shared/data is present, and a proptest of random
//! put/delete sequences compared with a brute-force scan after every step.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{assert_clean, fresh, tempdir};
use convergedb::{Config, Db, Error, Item, TokenizeOptions};
use proptest::prelude::*;

const DIM: usize = 8;

/// A deterministic vector for item `i`: one of 12 clusters plus a small offset.
fn vector(i: usize) -> Vec<f32> {
    let cluster = i % 12;
    (0..DIM)
        .map(|d| {
            let centre = if d == cluster % DIM {
                4.0 + cluster as f32
            } else {
                (cluster as f32 * 0.7 + d as f32).sin()
            };
            centre + ((i * 31 + d * 17) % 97) as f32 / 97.0 - 0.5
        })
        .collect()
}

fn catalog(db: &Db, n: usize) {
    let items: Vec<Item> = (0..n)
        .map(|i| Item::new(format!("i{i}")).vector("emb", vector(i)))
        .collect();
    db.put_items(&items).unwrap();
}

fn small_opts() -> TokenizeOptions {
    let mut o = TokenizeOptions::new("emb");
    o.levels = 3;
    o.codes = 8;
    o.iterations = 8;
    o
}

/// Every (key, codes) of the live items, through the public API.
fn all_codes(db: &Db, n: usize) -> BTreeMap<String, Vec<u16>> {
    (0..n)
        .filter_map(|i| {
            let key = format!("i{i}");
            db.sid(&key).unwrap().map(|c| (key, c))
        })
        .collect()
}

fn export(db: &Db, dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    db.export_tokenization(&path).unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn tokenizing_is_deterministic_and_independent_of_threads() {
    let files = tempdir();
    let mut exports = Vec::new();
    for threads in [1, 2, 3] {
        let (_dir, db) = fresh();
        catalog(&db, 300);
        let mut opts = small_opts();
        opts.threads = threads;
        let info = db.tokenize(&opts, None).unwrap();
        assert_eq!((info.version, info.levels, info.codes), (1, 3, 8));
        assert_eq!(all_codes(&db, 300).len(), 300, "every item got codes");
        exports.push(export(&db, files.path(), &format!("t{threads}.json")));
        assert_clean(&db);
    }
    assert_eq!(exports[0], exports[1], "1 vs 2 threads");
    assert_eq!(exports[0], exports[2], "1 vs 3 threads");
    // Another seed gives another table.
    let (_dir, db) = fresh();
    catalog(&db, 300);
    let mut opts = small_opts();
    opts.seed = 7;
    db.tokenize(&opts, None).unwrap();
    assert_ne!(export(&db, files.path(), "seed7.json"), exports[0]);
}

#[test]
fn new_items_get_codes_and_codes_are_stable_within_a_version() {
    let (_dir, db) = fresh();
    catalog(&db, 200);
    let v1 = db.tokenize(&small_opts(), None).unwrap();
    // A new item is assigned in the same call that stores it.
    db.put_items(&[Item::new("new").vector("emb", vector(5))])
        .unwrap();
    let new_codes = db.sid("new").unwrap().expect("the new item has codes");
    assert!(db.items_for_sid(&new_codes).contains(&"new".to_string()));
    // Replacing the item with a far-away vector keeps its codes (invariant 7).
    db.put_items(&[Item::new("new").vector("emb", vec![-50.0; DIM])])
        .unwrap();
    assert_eq!(db.sid("new").unwrap(), Some(new_codes.clone()));
    // An item without the vector has no codes; adding the vector later assigns them.
    db.put_items(&[Item::new("plain")]).unwrap();
    assert_eq!(db.sid("plain").unwrap(), None);
    db.put_vectors("emb", &[("plain".to_string(), vector(7))])
        .unwrap();
    assert!(db.sid("plain").unwrap().is_some());
    // Deleting drops the codes and the tuple from the trie when it was the only item.
    let before = db.items_for_sid(&new_codes);
    db.delete_items(&["new"]).unwrap();
    assert_eq!(db.sid("new").unwrap(), None);
    let after = db.items_for_sid(&new_codes);
    assert_eq!(after.len() + 1, before.len());
    if after.is_empty() {
        let prefix = &new_codes[..2];
        assert!(!db.allowed_next(prefix).contains(&new_codes[2]));
    }
    assert_clean(&db);
    // A new version re-assigns everything and bumps the version.
    let v2 = db.tokenize(&small_opts(), None).unwrap();
    assert_eq!(v2.version, v1.version + 1);
    assert_eq!(
        db.stats().unwrap().sid,
        Some(v2.clone()),
        "stats names the current table"
    );
    assert_clean(&db);
}

#[test]
fn balancing_reduces_collisions() {
    let mut rates = Vec::new();
    for balance in [false, true] {
        let (_dir, db) = fresh();
        catalog(&db, 400);
        let mut opts = small_opts();
        opts.levels = 2;
        opts.balance_last_level = balance;
        db.tokenize(&opts, None).unwrap();
        rates.push(db.sid_stats().unwrap().collision_rate);
        assert_clean(&db);
    }
    assert!(
        rates[1] < rates[0],
        "balanced {} vs plain {}",
        rates[1],
        rates[0]
    );
}

#[test]
fn export_then_import_round_trips_into_another_database() {
    let files = tempdir();
    let (_a, a) = fresh();
    catalog(&a, 150);
    a.tokenize(&small_opts(), None).unwrap();
    let path = files.path().join("tok.json");
    let info = a.export_tokenization(&path).unwrap();
    // Importing the current table unchanged is a no-op.
    assert_eq!(a.import_tokenization(&path).unwrap(), info);

    let (_b, b) = fresh();
    catalog(&b, 150);
    let imported = b.import_tokenization(&path).unwrap();
    assert_eq!(imported.fingerprint, info.fingerprint);
    assert_eq!(all_codes(&b, 150), all_codes(&a, 150));
    assert_eq!(
        export(&b, files.path(), "b.json"),
        std::fs::read(&path).unwrap()
    );
    // The imported codebooks assign new items exactly as the original database does.
    for db in [&a, &b] {
        db.put_items(&[Item::new("late").vector("emb", vector(33))])
            .unwrap();
    }
    assert_eq!(a.sid("late").unwrap(), b.sid("late").unwrap());
    assert_clean(&b);
}

#[test]
fn tokenization_survives_reopen() {
    let dir = tempdir();
    let (codes, info) = {
        let db = Config::new(dir.path()).open().unwrap();
        catalog(&db, 100);
        let info = db.tokenize(&small_opts(), None).unwrap();
        (all_codes(&db, 100), info)
    };
    let db = common::open(dir.path());
    assert_eq!(db.sid_info(), Some(info));
    assert_eq!(all_codes(&db, 100), codes);
    let (key, c) = codes.iter().next().unwrap();
    assert!(db.allowed_next(&[]).contains(&c[0]));
    assert!(db.items_for_sid(c).contains(key));
    assert_clean(&db);
}

#[test]
fn bad_tokenizations_are_refused() {
    let files = tempdir();
    let (_dir, db) = fresh();
    // Empty catalog: no item holds the vector.
    let err = db.tokenize(&small_opts(), None).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidTokenization(m) if m.contains("no item holds a vector named \"emb\"")),
        "{err}"
    );
    catalog(&db, 50);
    for (levels, codes, fact) in [
        (0, 8, "levels = 0"),
        (9, 8, "levels = 9"),
        (2, 70_000, "codes = 70000"),
        (2, 1, "codes = 1"),
    ] {
        let mut o = small_opts();
        o.levels = levels;
        o.codes = codes;
        let err = db.tokenize(&o, None).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidTokenization(m) if m.contains(fact)),
            "{err}"
        );
    }
    assert_eq!(db.sid_info(), None, "nothing was installed");

    let write = |name: &str, text: String| -> PathBuf {
        let p = files.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let items: String = (0..50)
        .map(|i| format!("\"i{i}\": [0, 1]"))
        .collect::<Vec<_>>()
        .join(",");
    let header = "\"format\": \"convergedb.tokenization\", \"format_version\": 1, \"levels\": 2, \"codes\": 4";
    // Codebook dimension different from the stored vector's.
    let cb = vec!["0.5"; 2 * 4 * 3].join(",");
    let p = write("dim.json", format!("{{{header}, \"vector\": \"emb\", \"dim\": 3, \"codebooks\": [{cb}], \"items\": {{{items}}}}}"));
    let err = db.import_tokenization(&p).unwrap_err();
    assert!(
        err.to_string().contains("dimension 3") && err.to_string().contains("dimension 8"),
        "{err}"
    );
    // NaN is not JSON; an infinite value written as a huge literal overflows f32.
    let cb = vec!["1e40"; 2 * 4 * 8].join(",");
    let p = write("inf.json", format!("{{{header}, \"vector\": \"emb\", \"dim\": 8, \"codebooks\": [{cb}], \"items\": {{{items}}}}}"));
    let err = db.import_tokenization(&p).unwrap_err();
    assert!(matches!(&err, Error::InvalidTokenization(_)), "{err}");
    // A file from another catalog.
    let p = write(
        "other.json",
        format!("{{{header}, \"items\": {{\"zzz\": [0, 1], {items}}}}}"),
    );
    let err = db.import_tokenization(&p).unwrap_err();
    assert!(
        err.to_string().contains("another catalog") && err.to_string().contains("\"zzz\""),
        "{err}"
    );
    // A code beyond C, a wrong tuple length, a LETTER token at the wrong level.
    let p = write(
        "code.json",
        format!("{{{header}, \"items\": {{\"i0\": [0, 4]}}}}"),
    );
    assert!(db
        .import_tokenization(&p)
        .unwrap_err()
        .to_string()
        .contains("code 4"));
    let p = write(
        "len.json",
        format!("{{{header}, \"items\": {{\"i0\": [0]}}}}"),
    );
    assert!(db
        .import_tokenization(&p)
        .unwrap_err()
        .to_string()
        .contains("1 codes, expected 2"));
    let p = write(
        "letter.json",
        "{\"i0\": [\"<b_1>\", \"<b_2>\"]}".to_string(),
    );
    assert!(db
        .import_tokenization(&p)
        .unwrap_err()
        .to_string()
        .contains("<a_N>"));
    assert_eq!(db.sid_info(), None, "nothing was installed");
    assert_clean(&db);
}

#[test]
fn letter_index_of_amazon_instruments() {
    let dir = std::env::var_os("CONVERGEDB_AMAZON_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/amazon-instruments")
        });
    let index = dir.join("Instruments.index.json");
    if !index.is_file() {
        eprintln!(
            "SKIPPED letter_index_of_amazon_instruments: no {}",
            index.display()
        );
        return;
    }
    let (_db_dir, db) = fresh();
    convergedb::import::amazon(&db, &dir, "Instruments", &Default::default()).unwrap();
    let info = db.import_tokenization(&index).unwrap();
    assert_eq!(
        (info.levels, info.codes, info.has_codebooks),
        (4, 256, false)
    );
    let stats = db.sid_stats().unwrap();
    assert_eq!(stats.items_with_codes, 9_922);
    assert_eq!(stats.distinct_tuples, 9_897, "the file's distinct tuples");
    // The file's own collisions, counted independently.
    let text = std::fs::read_to_string(&index).unwrap();
    let raw: BTreeMap<String, Vec<String>> = serde_json::from_str(&text).unwrap();
    let mut per: BTreeMap<&Vec<String>, u64> = BTreeMap::new();
    raw.values().for_each(|t| *per.entry(t).or_default() += 1);
    let colliding: u64 = per.values().filter(|n| **n > 1).sum();
    assert!((stats.collision_rate - colliding as f64 / 9_922.0).abs() < 1e-12);
    // One item's codes match its tokens.
    let (key, tokens) = raw.iter().next().unwrap();
    let codes: Vec<u16> = tokens
        .iter()
        .map(|t| t[3..t.len() - 1].parse().unwrap())
        .collect();
    assert_eq!(db.sid(key).unwrap(), Some(codes));
    assert_clean(&db);
}

/// One step of the property test.
#[derive(Clone, Debug)]
enum Op {
    Put(usize),
    Delete(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..40).prop_map(Op::Put),
        (0usize..40).prop_map(Op::Delete)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    /// Random put/delete sequences keep the trie equal to the tuples of the live items, and
    /// allowed_next equal to a brute-force scan, after every step.
    #[test]
    fn trie_follows_random_puts_and_deletes(ops in proptest::collection::vec(op(), 1..30)) {
        let (_dir, db) = fresh();
        catalog(&db, 20);
        let mut o = small_opts();
        o.levels = 2;
        o.codes = 4;
        db.tokenize(&o, None).unwrap();
        let mut live: BTreeSet<usize> = (0..20).collect();
        for op in ops {
            match op {
                Op::Put(i) => {
                    db.put_items(&[Item::new(format!("i{i}")).vector("emb", vector(i))]).unwrap();
                    live.insert(i);
                }
                Op::Delete(i) => {
                    let res = db.delete_items(&[&format!("i{i}")]);
                    prop_assert_eq!(res.is_ok(), live.remove(&i));
                }
            }
            let codes: Vec<Vec<u16>> = live.iter().map(|i| db.sid(&format!("i{i}")).unwrap().unwrap()).collect();
            for prefix_len in 0..2 {
                let prefixes: BTreeSet<&[u16]> = codes.iter().map(|c| &c[..prefix_len]).collect();
                for prefix in prefixes {
                    let brute: BTreeSet<u16> = codes.iter().filter(|c| c.starts_with(prefix)).map(|c| c[prefix_len]).collect();
                    prop_assert_eq!(db.allowed_next(prefix), brute.into_iter().collect::<Vec<_>>());
                }
            }
            for c in &codes {
                let expected: Vec<String> = live.iter().filter(|i| db.sid(&format!("i{i}")).unwrap().as_ref() == Some(c)).map(|i| format!("i{i}")).collect();
                let mut got = db.items_for_sid(c);
                got.sort();
                let mut expected = expected;
                expected.sort();
                prop_assert_eq!(got, expected);
            }
            let report = db.check().unwrap();
            prop_assert!(report.is_clean(), "{:?}", report.problems);
        }
    }
}

/// A tokenized database on disk, closed; returns (dir, codes of i0, id of i0 = 1).
fn closed_tokenized() -> (tempfile::TempDir, Vec<u16>) {
    let dir = tempdir();
    let db = Config::new(dir.path()).open().unwrap();
    catalog(&db, 60);
    db.tokenize(&small_opts(), None).unwrap();
    let codes = db.sid("i0").unwrap().unwrap();
    db.close().unwrap();
    (dir, codes)
}

fn sid_value(version: u64, codes: &[u16]) -> Vec<u8> {
    let mut v = vec![1u8];
    v.extend_from_slice(&version.to_le_bytes());
    codes
        .iter()
        .for_each(|c| v.extend_from_slice(&c.to_le_bytes()));
    v
}

fn problems(dir: &Path) -> Vec<String> {
    let db = common::open(dir);
    db.check().unwrap().problems
}

#[test]
fn check_reports_a_sid_of_a_missing_item_and_a_broken_inverse() {
    // Invariant 1, both halves: a sids entry for an item that does not exist, and sids
    // disagreeing with sid_items.
    let (dir, codes) = closed_tokenized();
    common::with_raw_tree(dir.path(), "sids", |t| {
        t.insert(5000u64.to_be_bytes(), sid_value(1, &codes))
            .unwrap();
    });
    let p = problems(dir.path());
    assert!(
        p.iter().any(|m| m.starts_with("I1 sids names item 5000")),
        "{p:?}"
    );
    assert!(p.iter().any(|m| m.starts_with("I1 item 5000")), "{p:?}");
}

#[test]
fn check_reports_codes_stamped_with_another_version() {
    // Invariant 7: codes carry the table version they were assigned under.
    let (dir, codes) = closed_tokenized();
    common::overwrite_raw(
        dir.path(),
        "sids",
        &1u64.to_be_bytes(),
        &sid_value(7, &codes),
    );
    let p = problems(dir.path());
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("I7 item 1 has codes of table version 7"),
        "{p:?}"
    );
}

#[test]
fn check_reports_an_item_that_lost_its_codes() {
    // F8 and I1: removing an item's sids entry (but not its tuple) is caught.
    let (dir, _codes) = closed_tokenized();
    common::with_raw_tree(dir.path(), "sids", |t| {
        t.remove(1u64.to_be_bytes()).unwrap();
    });
    let p = problems(dir.path());
    assert!(p.iter().any(|m| m.starts_with("F8 live item 1")), "{p:?}");
    assert!(
        p.iter().any(|m| m.starts_with("I1 item 1: sids says None")),
        "{p:?}"
    );
}

#[test]
fn quantize_previews_the_greedy_codes() {
    let (_dir, db) = fresh();
    catalog(&db, 120);
    assert_eq!(
        db.quantize(&vector(3)).unwrap(),
        None,
        "no tokenization yet"
    );
    let mut o = small_opts();
    o.balance_last_level = false;
    db.tokenize(&o, None).unwrap();
    // Unbalanced training codes are the greedy assignment of each training vector.
    for i in [0usize, 17, 119] {
        assert_eq!(
            db.quantize(&vector(i)).unwrap(),
            db.sid(&format!("i{i}")).unwrap()
        );
    }
    let err = db.quantize(&[1.0, 2.0]).unwrap_err();
    assert!(
        err.to_string().contains("dimension 2") && err.to_string().contains("dimension 8"),
        "{err}"
    );
}

#[test]
fn an_imported_encoder_runs_before_quantization() {
    // Encoder: one layer 8 -> 2 that keeps components 0 and 1 of the item vector, then ReLU-free
    // output. Codebooks in 2-d: level 0 has codes at (0,0), (10,0), (0,10), (10,10); level 1
    // refines by +-1. An item vector whose first two components are (9, 1) must get code 1 at
    // level 0 whatever its other six components say.
    let files = tempdir();
    let (_dir, db) = fresh();
    catalog(&db, 4);
    let mut weight = vec![0.0f32; 2 * 8];
    weight[0] = 1.0; // output 0 <- input 0
    weight[8 + 1] = 1.0; // output 1 <- input 1
    let cb = [
        0.0, 0.0, 10.0, 0.0, 0.0, 10.0, 10.0, 10.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, -1.0, -1.0,
    ];
    let file = serde_json::json!({
        "format": "convergedb.tokenization", "format_version": 1, "levels": 2, "codes": 4,
        "vector": "emb", "dim": 2, "codebooks": cb,
        "encoder": {"layers": [{"input": 8, "output": 2, "weight": weight, "bias": [0.0, 0.0]}]},
        "items": {"i0": [0, 0]},
    });
    let path = files.path().join("enc.json");
    std::fs::write(&path, file.to_string()).unwrap();
    let info = db.import_tokenization(&path).unwrap();
    assert!(info.has_encoder && info.has_codebooks);
    assert_eq!(info.dim, Some(8), "the table reads the 8-d item vector");
    let mut x = vec![100.0f32; 8];
    x[0] = 9.0;
    x[1] = 1.0;
    // Residual after (10, 0) is (-1, 1): nearest level-1 code is (0, 1) = code 2.
    assert_eq!(db.quantize(&x).unwrap(), Some(vec![1, 2]));
    db.put_items(&[Item::new("enc").vector("emb", x)]).unwrap();
    assert_eq!(db.sid("enc").unwrap(), Some(vec![1, 2]));
    assert_eq!(
        db.sid("i0").unwrap(),
        Some(vec![0, 0]),
        "file codes are kept as given"
    );
    assert_clean(&db);
}
