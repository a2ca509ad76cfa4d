//! Goal: a batch call is all-or-nothing: when one record is bad, nothing of the batch is
//! written. Method: build a known state, send a batch whose last (or middle) record fails inside
//! the write transaction (not in the up-front validation), assert the error variant, then assert
//! that stats, items, histories (with their versions), popularity and check() are exactly as
//! before the call.

mod common;

use common::{assert_clean, content, fresh, item, keys, snapshot};
use convergedb::{Db, Error, Interaction, Item};

const BASE: [&str; 3] = ["a", "b", "c"];
const USERS: [&str; 3] = ["u1", "u2", "u-new"];

/// Items a, b, c (vector "emb" of dimension 4) and a few interactions.
fn base(db: &Db) {
    db.put_items(&BASE.map(item)).unwrap();
    db.record_interactions(&[
        Interaction::new("u1", "a", 1),
        Interaction::new("u1", "b", 2),
        Interaction::new("u2", "a", 3),
    ])
    .unwrap();
}

#[test]
fn put_items_with_one_wrong_dimension_writes_nothing() {
    let (_dir, db) = fresh();
    base(&db);
    let all = ["a", "b", "c", "n1", "n2", "n3"];
    let before = snapshot(&db, &all, &USERS);

    // n1 and n2 are fine (n1 even brings a new vector name), a is a replace, n3 has the wrong
    // dimension for "emb" and comes last so everything before it was already staged.
    let batch = vec![
        item("n1").vector("new-name", vec![1.0, 2.0]),
        Item::new("a").title("replaced title"),
        item("n2"),
        Item::new("n3").vector("emb", vec![1.0, 2.0, 3.0]),
    ];
    let err = db.put_items(&batch).unwrap_err();
    assert!(
        matches!(&err, Error::VectorDimension { item, expected: 4, got: 3, .. } if item == "n3"),
        "{err:?}"
    );

    assert_eq!(snapshot(&db, &all, &USERS), before);
    assert_eq!(db.get_item("n1").unwrap(), None);
    assert_eq!(db.get_item("a").unwrap().unwrap().title, "Title of a");
    assert!(
        !content(&db).vector_dims.contains_key("new-name"),
        "the new vector name of the failed batch must not be fixed"
    );
    assert_clean(&db);

    // The failed batch reserved nothing: the next item gets the next id, and "new-name" may
    // still take any dimension.
    let ids = db
        .put_items(&[Item::new("n1").vector("new-name", vec![1.0; 5])])
        .unwrap();
    assert_eq!(ids, vec![4]);
    assert_eq!(content(&db).vector_dims["new-name"], 5);
    assert_clean(&db);
}

#[test]
fn insert_items_with_one_existing_key_writes_nothing() {
    let (_dir, db) = fresh();
    base(&db);
    let all = ["a", "b", "c", "n1", "n2"];
    let before = snapshot(&db, &all, &USERS);
    let err = db
        .insert_items(&[item("n1"), item("n2"), Item::new("b").title("clobber")])
        .unwrap_err();
    assert!(
        matches!(&err, Error::ItemExists { key } if key == "b"),
        "{err:?}"
    );
    assert_eq!(snapshot(&db, &all, &USERS), before);
    assert_clean(&db);
}

#[test]
fn record_interactions_with_one_unknown_item_writes_nothing() {
    let (_dir, db) = fresh();
    base(&db);
    let before = snapshot(&db, &BASE, &USERS);
    let versions: Vec<u64> = ["u1", "u2"]
        .iter()
        .map(|u| db.history(u).unwrap().version)
        .collect();
    let popular_before = db.recommend("nobody", 10).unwrap();

    let err = db
        .record_interactions(&[
            Interaction::new("u1", "c", 10).kind("brand-new-kind"),
            Interaction::new("u-new", "a", 11),
            Interaction::new("u2", "b", 12),
            Interaction::new("u2", "missing", 13),
            Interaction::new("u1", "a", 14),
        ])
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnknownItem { key } if key == "missing"),
        "{err:?}"
    );

    assert_eq!(snapshot(&db, &BASE, &USERS), before);
    let versions_after: Vec<u64> = ["u1", "u2"]
        .iter()
        .map(|u| db.history(u).unwrap().version)
        .collect();
    assert_eq!(versions, versions_after, "history versions must not move");
    assert!(matches!(
        db.history("u-new"),
        Err(Error::UnknownUser { .. })
    ));
    assert_eq!(db.recommend("nobody", 10).unwrap(), popular_before);
    assert!(content(&db).kinds.is_empty(), "the new kind was not kept");
    assert_clean(&db);
}

#[test]
fn record_interactions_with_one_deleted_item_writes_nothing() {
    let (_dir, db) = fresh();
    base(&db);
    db.delete_items(&["c"]).unwrap();
    let before = snapshot(&db, &BASE, &USERS);
    let err = db
        .record_interactions(&[
            Interaction::new("u1", "a", 10),
            Interaction::new("u1", "c", 11),
        ])
        .unwrap_err();
    assert!(
        matches!(&err, Error::DeletedItem { key } if key == "c"),
        "{err:?}"
    );
    assert_eq!(snapshot(&db, &BASE, &USERS), before);
    assert_clean(&db);
}

#[test]
fn delete_items_with_one_unknown_key_deletes_nothing() {
    let (_dir, db) = fresh();
    base(&db);
    let before = snapshot(&db, &BASE, &USERS);
    let err = db.delete_items(&["a", "b", "nope"]).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownItem { key } if key == "nope"),
        "{err:?}"
    );
    assert_eq!(snapshot(&db, &BASE, &USERS), before);
    assert!(db.get_item("a").unwrap().is_some());
    assert_eq!(
        keys(&db.recommend("nobody", 3).unwrap()),
        vec!["a", "b", "c"]
    );
    assert_clean(&db);

    // One already-deleted key fails the batch the same way.
    db.delete_items(&["c"]).unwrap();
    let before = snapshot(&db, &BASE, &USERS);
    let err = db.delete_items(&["a", "c"]).unwrap_err();
    assert!(
        matches!(&err, Error::DeletedItem { key } if key == "c"),
        "{err:?}"
    );
    assert_eq!(snapshot(&db, &BASE, &USERS), before);
    assert!(db.get_item("a").unwrap().is_some());
    assert_clean(&db);
}

#[test]
fn a_failed_batch_survives_reopen_as_nothing() {
    // The rejected batch must not reach the disk either.
    let dir = common::tempdir();
    let db = common::open(dir.path());
    base(&db);
    let before = snapshot(&db, &["a", "b", "c", "n1"], &USERS);
    assert!(db
        .put_items(&[item("n1"), Item::new("n2").vector("emb", vec![0.0])])
        .is_err());
    assert!(db
        .record_interactions(&[
            Interaction::new("u1", "c", 5),
            Interaction::new("u1", "zz", 6)
        ])
        .is_err());
    db.close().unwrap();
    let db = common::open(dir.path());
    assert_eq!(snapshot(&db, &["a", "b", "c", "n1"], &USERS), before);
    assert_clean(&db);
}
