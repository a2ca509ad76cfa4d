//! Goal: every class of bad input is rejected with its own error variant, a message that names
//! the facts a person needs (key, dimension, limit, tree), and no change to the database.
//! Method: one test per class; each builds a small database, makes the bad call through
//! `rejected` (which snapshots the stats before and after and asserts they are equal), matches
//! the exact variant and checks the Display text. Damaged files are made by closing the
//! database and rewriting records through sled directly.

mod common;

use std::fmt::Debug;
use std::path::Path;

use common::{assert_clean, content, fresh, item, overwrite_raw, tempdir};
use convergedb::{Config, Db, Error, Interaction, Item, Result, FORMAT_VERSION};

/// A named call that must be rejected.
type Call<'a> = (&'a str, Box<dyn Fn(&Db) -> Result<()>>);

/// Runs a call that must fail; asserts it changed none of the stats counters; returns the error.
#[track_caller]
fn rejected<T: Debug>(db: &Db, call: impl FnOnce(&Db) -> Result<T>) -> Error {
    let before = content(db);
    let err = match call(db) {
        Ok(v) => panic!("the call was accepted and returned {v:?}"),
        Err(e) => e,
    };
    assert_eq!(
        content(db),
        before,
        "a rejected call changed the stats ({err})"
    );
    err
}

#[track_caller]
fn assert_mentions(err: &Error, facts: &[&str]) {
    let msg = err.to_string();
    for f in facts {
        assert!(msg.contains(f), "message {msg:?} does not mention {f:?}");
    }
}

fn small(db: &Db) {
    db.put_items(&[item("a"), item("b"), item("c")]).unwrap();
    db.record_interactions(&[
        Interaction::new("alice", "a", 1),
        Interaction::new("alice", "b", 2),
        Interaction::new("bob", "a", 3),
    ])
    .unwrap();
}

#[test]
fn wrong_vector_dimension() {
    let (_dir, db) = fresh();
    small(&db); // "emb" is fixed at dimension 4
    let err = rejected(&db, |db| {
        db.put_items(&[Item::new("x").vector("emb", vec![1.0, 2.0, 3.0])])
    });
    match &err {
        Error::VectorDimension {
            item,
            name,
            expected,
            got,
        } => assert_eq!(
            (item.as_str(), name.as_str(), *expected, *got),
            ("x", "emb", 4, 3)
        ),
        other => panic!("wrong variant: {other:?}"),
    }
    assert_mentions(&err, &["\"x\"", "\"emb\"", "dimension 3", "dimension 4"]);
    assert_eq!(db.get_item("x").unwrap(), None);

    // Two items of one batch that disagree on a new name.
    let err = rejected(&db, |db| {
        db.put_items(&[
            Item::new("y").vector("fresh", vec![1.0, 2.0]),
            Item::new("z").vector("fresh", vec![1.0, 2.0, 3.0]),
        ])
    });
    assert!(
        matches!(&err, Error::VectorDimension { item, expected: 2, got: 3, .. } if item == "z"),
        "{err:?}"
    );

    // A dimension fixed up front by the configuration.
    let dir = tempdir();
    let db = Config::new(dir.path()).vector("text", 8).open().unwrap();
    assert_eq!(content(&db).vector_dims["text"], 8);
    let err = rejected(&db, |db| {
        db.put_items(&[Item::new("t").vector("text", vec![0.5; 4])])
    });
    assert!(
        matches!(
            &err,
            Error::VectorDimension {
                expected: 8,
                got: 4,
                ..
            }
        ),
        "{err:?}"
    );
    db.close().unwrap();
    // Reopening with a configuration that disagrees with the stored dimension fails.
    let err = Config::new(dir.path())
        .vector("text", 16)
        .open()
        .unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument(_)), "{err:?}");
    assert_mentions(&err, &["\"text\"", "8", "16"]);
}

#[test]
fn unknown_item_in_an_interaction() {
    let (_dir, db) = fresh();
    small(&db);
    let err = rejected(&db, |db| {
        db.record_interactions(&[Interaction::new("alice", "no-such-item", 5)])
    });
    assert!(
        matches!(&err, Error::UnknownItem { key } if key == "no-such-item"),
        "{err:?}"
    );
    assert_mentions(&err, &["\"no-such-item\"", "put the item"]);
    assert_eq!(db.history("alice").unwrap().entries.len(), 2);
}

#[test]
fn deleted_item_in_an_interaction() {
    let (_dir, db) = fresh();
    small(&db);
    db.delete_items(&["c"]).unwrap();
    let err = rejected(&db, |db| {
        db.record_interactions(&[Interaction::new("carol", "c", 5)])
    });
    assert!(
        matches!(&err, Error::DeletedItem { key } if key == "c"),
        "{err:?}"
    );
    assert_mentions(&err, &["\"c\"", "deleted"]);
    assert!(matches!(
        db.history("carol"),
        Err(Error::UnknownUser { .. })
    ));
}

#[test]
fn empty_item_and_user_keys() {
    let (_dir, db) = fresh();
    small(&db);
    let item_calls: Vec<Call> = vec![
        (
            "put_items",
            Box::new(|db| db.put_items(&[item("ok"), Item::new("")]).map(drop)),
        ),
        (
            "insert_items",
            Box::new(|db| db.insert_items(&[Item::new("")]).map(drop)),
        ),
        (
            "delete_items",
            Box::new(|db| db.delete_items(&[""]).map(drop)),
        ),
        ("get_item", Box::new(|db| db.get_item("").map(drop))),
        ("item_id", Box::new(|db| db.item_id("").map(drop))),
        (
            "record_interactions(item)",
            Box::new(|db| db.record_interactions(&[Interaction::new("alice", "", 1)])),
        ),
    ];
    for (name, call) in &item_calls {
        let err = rejected(&db, call);
        assert!(
            matches!(err, Error::EmptyKey { what: "item" }),
            "{name}: {err:?}"
        );
        assert_mentions(&err, &["empty item key"]);
    }
    let user_calls: Vec<Call> = vec![
        (
            "record_interactions(user)",
            Box::new(|db| {
                db.record_interactions(&[
                    Interaction::new("alice", "a", 9),
                    Interaction::new("", "a", 1),
                ])
            }),
        ),
        ("history", Box::new(|db| db.history("").map(drop))),
        ("recommend", Box::new(|db| db.recommend("", 3).map(drop))),
    ];
    for (name, call) in &user_calls {
        let err = rejected(&db, call);
        assert!(
            matches!(err, Error::EmptyKey { what: "user" }),
            "{name}: {err:?}"
        );
        assert_mentions(&err, &["empty user key"]);
    }
    assert_eq!(db.get_item("ok").unwrap(), None);
    assert_clean(&db);
}

#[test]
fn over_long_key() {
    let dir = tempdir();
    let db = Config::new(dir.path()).max_key_bytes(8).open().unwrap();
    db.put_items(&[Item::new("12345678")]).unwrap();
    let err = rejected(&db, |db| db.put_items(&[Item::new("123456789")]));
    assert!(
        matches!(&err, Error::TooLong { len: 9, max: 8, .. }),
        "{err:?}"
    );
    assert_mentions(&err, &["item key", "9 bytes", "8 bytes"]);
}

#[test]
fn put_items_replaces_an_existing_key_and_insert_items_refuses() {
    let (_dir, db) = fresh();
    let first = db
        .put_items(&[
            Item::new("r")
                .title("old title")
                .description("old description")
                .attribute("year", "1999")
                .attribute("lang", "en")
                .vector("emb", vec![1.0, 1.0, 1.0, 1.0])
                .vector("img", vec![2.0, 2.0]),
            item("other"),
        ])
        .unwrap();
    db.record_interactions(&[Interaction::new("u", "r", 1)])
        .unwrap();
    let before = content(&db);

    let replacement = Item::new("r")
        .title("new title")
        .attribute("year", "2000")
        .vector("emb", vec![9.0, 8.0, 7.0, 6.0]);
    let second = db.put_items(std::slice::from_ref(&replacement)).unwrap();
    assert_eq!(second[0], first[0], "a replaced item keeps its internal id");
    assert_eq!(db.item_id("r").unwrap(), Some(first[0]));
    // Text, attributes and vectors are replaced as a whole: "lang" and "img" are gone.
    assert_eq!(db.get_item("r").unwrap(), Some(replacement.clone()));
    let after = content(&db);
    assert_eq!(after.items, before.items, "a replace adds no item");
    assert_eq!(after.catalog_version, before.catalog_version + 1);
    // The history still names the same item.
    let h = db.history("u").unwrap();
    assert_eq!(
        (h.entries[0].item.as_str(), h.entries[0].item_id),
        ("r", first[0])
    );
    assert_clean(&db);

    let err = rejected(&db, |db| {
        db.insert_items(&[Item::new("fresh"), Item::new("r").title("clobbered")])
    });
    assert!(
        matches!(&err, Error::ItemExists { key } if key == "r"),
        "{err:?}"
    );
    assert_mentions(&err, &["\"r\"", "already exists", "put_items"]);
    assert_eq!(db.get_item("r").unwrap(), Some(replacement));
    assert_eq!(db.get_item("fresh").unwrap(), None);

    // insert_items of a new key works and of a deleted key revives it under its old id.
    db.delete_items(&["other"]).unwrap();
    let ids = db
        .insert_items(&[Item::new("fresh"), Item::new("other")])
        .unwrap();
    assert_eq!(ids[1], first[1]);
    assert_eq!(ids[0], 3);
    assert_clean(&db);
}

#[test]
fn duplicate_key_in_one_batch() {
    let (_dir, db) = fresh();
    small(&db);
    for err in [
        rejected(&db, |db| {
            db.put_items(&[item("d"), item("e"), Item::new("d").title("again")])
        }),
        rejected(&db, |db| db.insert_items(&[item("d"), item("d")])),
        rejected(&db, |db| db.delete_items(&["a", "b", "a"])),
    ] {
        let Error::DuplicateInBatch { key } = &err else {
            panic!("wrong variant: {err:?}");
        };
        assert!(key == "d" || key == "a", "{key}");
        assert_mentions(&err, &[&format!("{key:?}"), "more than once"]);
    }
    assert_eq!(db.get_item("d").unwrap(), None);
    assert!(db.get_item("a").unwrap().is_some());
}

#[test]
fn nan_infinite_and_empty_vectors() {
    let (_dir, db) = fresh();
    small(&db);
    let cases = [
        (vec![1.0, f32::NAN, 0.0, 0.0], "component 1 is NaN"),
        (vec![0.0, 0.0, 0.0, f32::INFINITY], "component 3 is inf"),
        (
            vec![f32::NEG_INFINITY, 0.0, 0.0, 0.0],
            "component 0 is -inf",
        ),
        (vec![], "empty"),
    ];
    for (values, reason) in cases {
        let err = rejected(&db, |db| {
            db.put_items(&[item("fine"), Item::new("v").vector("emb", values.clone())])
        });
        assert!(
            matches!(&err, Error::InvalidVector { item, name, .. } if item == "v" && name == "emb"),
            "{err:?}"
        );
        assert_mentions(&err, &["\"v\"", "\"emb\"", reason]);
    }
    assert_eq!(db.get_item("fine").unwrap(), None);
}

#[test]
fn nan_and_infinite_weights() {
    let (_dir, db) = fresh();
    small(&db);
    for w in [f32::NAN, f32::INFINITY] {
        let err = rejected(&db, |db| {
            db.record_interactions(&[
                Interaction::new("alice", "c", 7),
                Interaction::new("bob", "b", 8).weight(w),
            ])
        });
        assert!(matches!(&err, Error::InvalidArgument(_)), "{err:?}");
        assert_mentions(
            &err,
            &["interaction 1", "\"bob\"", "\"b\"", "weight", "not finite"],
        );
    }
    assert_eq!(db.history("alice").unwrap().entries.len(), 2);
    // An empty kind is refused the same way.
    let err = rejected(&db, |db| {
        db.record_interactions(&[Interaction::new("alice", "c", 7).kind("")])
    });
    assert!(matches!(&err, Error::InvalidArgument(_)), "{err:?}");
    assert_mentions(&err, &["kind"]);
}

#[test]
fn k_out_of_range() {
    let (_dir, db) = fresh();
    small(&db);
    let err = rejected(&db, |db| db.recommend("alice", 0));
    assert!(
        matches!(err, Error::InvalidK { k: 0, max: 10_000 }),
        "{err:?}"
    );
    assert_mentions(&err, &["k = 0", "between 1 and 10000"]);
    let err = rejected(&db, |db| db.recommend("alice", 10_001));
    assert!(
        matches!(
            err,
            Error::InvalidK {
                k: 10_001,
                max: 10_000
            }
        ),
        "{err:?}"
    );
    assert!(db.recommend("alice", 10_000).is_ok());

    let dir = tempdir();
    let db = Config::new(dir.path()).max_k(2).open().unwrap();
    small(&db);
    let err = rejected(&db, |db| db.recommend("nobody", 3));
    assert!(matches!(err, Error::InvalidK { k: 3, max: 2 }), "{err:?}");
    assert_mentions(&err, &["k = 3", "between 1 and 2"]);
    assert_eq!(db.recommend("nobody", 2).unwrap().items.len(), 2);
    // k is checked before the user: an unknown user with a bad k still gets InvalidK.
    assert!(matches!(db.recommend("", 0), Err(Error::InvalidK { .. })));
}

#[test]
fn batch_over_max_batch() {
    let dir = tempdir();
    let db = Config::new(dir.path()).max_batch(3).open().unwrap();
    db.put_items(&[item("a"), item("b"), item("c")]).unwrap();
    let four_items = [item("d"), item("e"), item("f"), item("g")];
    let err = rejected(&db, |db| db.put_items(&four_items));
    assert!(
        matches!(err, Error::BatchTooLarge { len: 4, max: 3 }),
        "{err:?}"
    );
    assert_mentions(&err, &["batch of 4", "limit of 3", "split"]);
    let err = rejected(&db, |db| db.insert_items(&four_items));
    assert!(matches!(err, Error::BatchTooLarge { len: 4, max: 3 }));
    let events: Vec<Interaction> = (0..4).map(|t| Interaction::new("u", "a", t)).collect();
    let err = rejected(&db, |db| db.record_interactions(&events));
    assert!(matches!(err, Error::BatchTooLarge { len: 4, max: 3 }));
    let err = rejected(&db, |db| db.delete_items(&["a", "b", "c", "x"]));
    assert!(matches!(err, Error::BatchTooLarge { len: 4, max: 3 }));
    // Exactly max_batch is accepted.
    db.record_interactions(&events[..3]).unwrap();
    assert_eq!(db.delete_items(&["a", "b", "c"]).unwrap(), 3);
    assert_clean(&db);
    // max_batch = 0 is a bad configuration.
    let other = tempdir();
    let err = Config::new(other.path()).max_batch(0).open().unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

/// A closed database with items a, b, c and users alice, bob, in `dir`.
fn closed_small(dir: &Path) {
    let db = common::open(dir);
    small(&db);
    db.close().unwrap();
}

#[test]
fn corrupt_history_record() {
    let dir = tempdir();
    closed_small(dir.path());
    overwrite_raw(dir.path(), "histories", b"alice", b"\x01\xff\xfe garbage");

    let db = common::open(dir.path());
    for err in [
        rejected(&db, |db| db.history("alice")),
        rejected(&db, |db| db.recommend("alice", 5)),
        rejected(&db, |db| {
            db.record_interactions(&[Interaction::new("alice", "c", 9)])
        }),
    ] {
        match &err {
            Error::Corruption { tree, key, .. } => {
                assert_eq!(*tree, "histories");
                assert_eq!(key, "\"alice\"");
            }
            other => panic!("wrong variant: {other:?}"),
        }
        assert_mentions(&err, &["corrupt", "tree \"histories\"", "\"alice\""]);
    }
    // The other user is untouched.
    assert_eq!(db.history("bob").unwrap().entries.len(), 1);
    assert_eq!(db.recommend("bob", 5).unwrap().items.len(), 2);

    // check() reports the damage instead of failing or panicking.
    let report = db.check().expect("check() runs on a damaged database");
    assert!(!report.is_clean());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("histories") && p.contains("\"alice\"")),
        "{:#?}",
        report.problems
    );
}

#[test]
fn empty_and_wrong_version_history_records() {
    for garbage in [&b""[..], &b"\x07\x00\x00\x00"[..], &b"\x01\xff"[..]] {
        let dir = tempdir();
        closed_small(dir.path());
        overwrite_raw(dir.path(), "histories", b"bob", garbage);
        let db = common::open(dir.path());
        let err = rejected(&db, |db| db.history("bob"));
        assert!(
            matches!(&err, Error::Corruption { tree: "histories", key, .. } if key == "\"bob\""),
            "{garbage:?}: {err:?}"
        );
        assert!(!db.check().unwrap().is_clean());
    }
}

#[test]
fn corrupt_item_record_fails_open() {
    let dir = tempdir();
    closed_small(dir.path());
    overwrite_raw(
        dir.path(),
        "items",
        &1u64.to_be_bytes(),
        b"\x01 not an item",
    );
    let err = Config::new(dir.path()).open().unwrap_err();
    match &err {
        Error::Corruption { tree, key, .. } => {
            assert_eq!(*tree, "items");
            assert_eq!(key, "0x0000000000000001");
        }
        other => panic!("wrong variant: {other:?}"),
    }
    assert_mentions(&err, &["tree \"items\"", "0x0000000000000001"]);
}

fn header(version: u32) -> Vec<u8> {
    let mut h = b"CNVRGDB\0".to_vec();
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h
}

#[test]
fn newer_format_header() {
    let dir = tempdir();
    closed_small(dir.path());
    assert_eq!(
        common::read_raw(dir.path(), "meta", b"header"),
        Some(header(FORMAT_VERSION)),
        "the header layout is magic, u32 LE version, u32 LE 0"
    );
    overwrite_raw(dir.path(), "meta", b"header", &header(FORMAT_VERSION + 1));
    let err = Config::new(dir.path()).open().unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedFormat { found, supported }
            if found == FORMAT_VERSION + 1 && supported == FORMAT_VERSION),
        "{err:?}"
    );
    assert_mentions(
        &err,
        &[
            &format!("version {}", FORMAT_VERSION + 1),
            &format!("({FORMAT_VERSION})"),
            "upgrade",
        ],
    );
}

#[test]
fn header_with_another_magic_or_version_zero() {
    for bad in [
        b"NOTADB!\0\x01\0\0\0\0\0\0\0".to_vec(),
        header(0),
        b"short".to_vec(),
    ] {
        let dir = tempdir();
        closed_small(dir.path());
        overwrite_raw(dir.path(), "meta", b"header", &bad);
        let err = Config::new(dir.path()).open().unwrap_err();
        assert!(
            matches!(&err, Error::NotADatabase { .. }),
            "{bad:?}: {err:?}"
        );
        assert_mentions(&err, &["is not a convergedb database", "header"]);
    }
}

/// The names and contents of the files in `dir`.
fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn not_a_database() {
    // A directory holding someone else's file: refused, and left as it was.
    let dir = tempdir();
    std::fs::write(dir.path().join("notes.txt"), b"my notes").unwrap();
    let before = listing(dir.path());
    let err = Config::new(dir.path()).open().unwrap_err();
    assert!(
        matches!(&err, Error::NotADatabase { path, .. } if path == dir.path()),
        "{err:?}"
    );
    assert_mentions(&err, &["is not a convergedb database", "other files"]);
    assert_eq!(listing(dir.path()), before);

    // A plain file.
    let file = dir.path().join("notes.txt");
    let err = Config::new(&file).open().unwrap_err();
    assert!(
        matches!(&err, Error::NotADatabase { path, .. } if path == &file),
        "{err:?}"
    );
    assert_mentions(&err, &["is not a convergedb database", "file"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"my notes");

    // A sled database that is not ours.
    let dir = tempdir();
    {
        let raw = common::raw_open(dir.path());
        raw.open_tree("someone-else")
            .unwrap()
            .insert(b"k", b"v")
            .unwrap();
        raw.flush().unwrap();
    }
    let err = Config::new(dir.path()).open().unwrap_err();
    assert!(matches!(&err, Error::NotADatabase { .. }), "{err:?}");
    assert_mentions(&err, &["without a convergedb schema header"]);
    // ... and it was not initialised by the failed open.
    assert_eq!(common::read_raw(dir.path(), "meta", b"header"), None);

    // A sled database with data in one of our tree names but no header.
    let dir = tempdir();
    {
        let raw = common::raw_open(dir.path());
        raw.open_tree("items").unwrap().insert(b"k", b"v").unwrap();
        raw.flush().unwrap();
    }
    let err = Config::new(dir.path()).open().unwrap_err();
    assert!(matches!(&err, Error::NotADatabase { .. }), "{err:?}");

    // A missing directory with create_if_missing(false): refused and not created.
    let parent = tempdir();
    let missing = parent.path().join("nope");
    let err = Config::new(&missing)
        .create_if_missing(false)
        .open()
        .unwrap_err();
    assert!(matches!(&err, Error::NotADatabase { .. }), "{err:?}");
    assert_mentions(&err, &["does not exist"]);
    assert!(!missing.exists());
}

#[test]
fn unknown_user_history() {
    let (_dir, db) = fresh();
    small(&db);
    let err = rejected(&db, |db| db.history("mallory"));
    assert!(
        matches!(&err, Error::UnknownUser { key } if key == "mallory"),
        "{err:?}"
    );
    assert_mentions(&err, &["unknown user \"mallory\""]);
    // An unknown user is not an error for recommend: it gets the popularity list.
    let rec = db.recommend("mallory", 2).unwrap();
    assert_eq!(rec.history_version, 0);
    assert_eq!(common::keys(&rec), vec!["a", "b"]);
}

#[test]
fn a_database_held_by_an_open_handle_is_in_use() {
    let dir = tempdir();
    let db = Config::new(dir.path()).open().unwrap();
    let err = Config::new(dir.path()).open().unwrap_err();
    assert!(matches!(&err, Error::InUse { .. }), "{err:?}");
    assert_mentions(&err, &["in use", &dir.path().display().to_string()]);
    db.close().unwrap();
}

#[test]
fn a_huge_item_id_in_a_key_fails_open_without_allocating_for_it() {
    // Item ids are dense; a record (or a popularity count) under an id far beyond the catalog
    // must be reported as corruption, not used to size the in-memory tables.
    for tree in ["items", "popular"] {
        let dir = tempdir();
        closed_small(dir.path());
        let item_a = common::read_raw(dir.path(), "items", &1u64.to_be_bytes()).unwrap();
        let count = common::read_raw(dir.path(), "popular", &1u64.to_be_bytes()).unwrap();
        let value = if tree == "items" { item_a } else { count };
        common::with_raw_tree(dir.path(), tree, |t| {
            t.insert((u64::MAX / 2).to_be_bytes(), value.clone())
                .unwrap();
        });
        let err = Config::new(dir.path()).open().unwrap_err();
        match &err {
            Error::Corruption { tree: t, key, .. } => {
                assert_eq!(*t, tree);
                assert_eq!(key, "0x7fffffffffffffff");
            }
            other => panic!("wrong variant for {tree}: {other:?}"),
        }
    }
}
