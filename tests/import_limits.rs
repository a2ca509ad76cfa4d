//! Goal: the importers refuse bad input instead of coercing it, never allocate without a bound
//! on untrusted input, and find every limit before the first write (issue 17, classes 4 and 5).
//! Each test checks the exact error (file, line, words) and that nothing was written.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use convergedb::import::{
    interactions_csv, interactions_jsonl, items_jsonl, movielens, ImportOptions, MAX_LINE_BYTES,
};
use convergedb::{Db, Error, Item};

fn opts(batch_size: usize) -> ImportOptions<'static> {
    ImportOptions {
        batch_size,
        ..ImportOptions::default()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[track_caller]
fn import_error(result: convergedb::Result<convergedb::import::ImportReport>) -> (u64, String) {
    match result {
        Err(Error::Import { line, reason, .. }) => (line, reason),
        other => panic!("expected Error::Import, got {other:?}"),
    }
}

fn nothing_written(db: &Db) {
    let s = db.stats().unwrap();
    assert_eq!(
        (s.items, s.interactions_recorded),
        (0, 0),
        "the import wrote"
    );
}

#[test]
fn an_overlong_line_is_refused_with_its_number() {
    let (dir, db) = common::fresh();
    let path = dir.path().join("items.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(f, "{{\"key\": \"a\"}}").unwrap();
    // A valid JSON object one byte over the limit: refused for its length, not its content.
    let pad = MAX_LINE_BYTES - "{\"key\": \"b\", \"title\": \"\"}".len() + 1;
    writeln!(f, "{{\"key\": \"b\", \"title\": \"{}\"}}", "x".repeat(pad)).unwrap();
    f.flush().unwrap();
    drop(f);
    let (line, reason) = import_error(items_jsonl(&db, &path, &opts(10)));
    assert_eq!(line, 2, "{reason}");
    assert!(reason.contains("16 MiB"), "{reason}");
    nothing_written(&db);
}

#[test]
fn dev_zero_is_refused_after_a_bounded_read() {
    let (_dir, db) = common::fresh();
    let zero = Path::new("/dev/zero");
    let (line, reason) = import_error(items_jsonl(&db, zero, &opts(10)));
    assert_eq!(line, 1);
    assert!(reason.contains("longer than the limit"), "{reason}");
    let (line, reason) = import_error(interactions_csv(&db, zero, &opts(10)));
    assert_eq!(line, 1, "{reason}");
    assert!(reason.contains("longer than the limit"), "{reason}");
    nothing_written(&db);
}

fn movielens_dir(dir: &Path, timestamp: &str) -> PathBuf {
    let ml = dir.join("ml");
    std::fs::create_dir_all(&ml).unwrap();
    write(
        &ml,
        "ml-100k.item",
        "item_id:token\tmovie_title:token_seq\n1\tToy Story\n2\tHeat\n",
    );
    write(
        &ml,
        "ml-100k.inter",
        &format!(
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n\
             7\t1\t4\t881250949\n7\t2\t3.5\t{timestamp}\n"
        ),
    );
    ml
}

#[test]
fn movielens_timestamps_must_be_integers() {
    for bad in ["5.5", "1e30", "99999999999999999999", "nan"] {
        let (dir, db) = common::fresh();
        let ml = movielens_dir(dir.path(), bad);
        let (line, reason) = import_error(movielens(&db, &ml, &opts(10)));
        assert_eq!(line, 3, "{bad}: {reason}");
        assert!(reason.contains("not an integer"), "{bad}: {reason}");
        nothing_written(&db);
    }
    let (dir, db) = common::fresh();
    let ml = movielens_dir(dir.path(), "881250950");
    let report = movielens(&db, &ml, &opts(10)).unwrap();
    assert_eq!((report.items, report.interactions), (2, 2));
    let h = db.history("7").unwrap();
    assert_eq!(h.entries[1].timestamp, 881250950);
    assert_eq!(h.entries[1].weight, 3.5);
}

#[test]
fn duplicate_columns_are_refused() {
    let (dir, db) = common::fresh();
    db.put_items(&[Item::new("m1")]).unwrap();
    let path = write(
        dir.path(),
        "x.csv",
        "user,item,timestamp,USER\nalice,m1,1,bob\n",
    );
    let (line, reason) = import_error(interactions_csv(&db, &path, &opts(10)));
    assert_eq!(line, 1);
    assert!(reason.contains("\"user\" appears 2 times"), "{reason}");
    assert_eq!(db.stats().unwrap().interactions_recorded, 0);

    let ml = dir.path().join("ml");
    std::fs::create_dir_all(&ml).unwrap();
    write(
        &ml,
        "ml-100k.item",
        "item_id:token\tmovie_title:token_seq\titem_id:token\n1\tToy Story\t2\n",
    );
    write(&ml, "ml-100k.inter", "user_id:token\n");
    let (line, reason) = import_error(movielens(&db, &ml, &opts(10)));
    assert_eq!(line, 1);
    assert!(reason.contains("\"item_id\" appears twice"), "{reason}");
}

#[test]
fn batch_sizes_out_of_range_are_refused_before_reading() {
    let (dir, db) = common::fresh();
    let path = write(dir.path(), "items.jsonl", "{\"key\": \"a\"}\n");
    for size in [0, 1_000_001] {
        match items_jsonl(&db, &path, &opts(size)) {
            Err(Error::InvalidArgument(m)) => {
                assert!(m.contains(&format!("batch size {size}")), "{m}");
                assert!(m.contains("between 1 and 1000000"), "{m}");
            }
            other => panic!("batch size {size}: {other:?}"),
        }
    }
    nothing_written(&db);
    items_jsonl(&db, &path, &opts(1_000_000)).unwrap();
}

#[test]
fn the_kinds_limit_is_found_before_the_first_write() {
    let (dir, db) = common::fresh();
    db.put_items(&[Item::new("m1")]).unwrap();
    let mut text = String::new();
    for i in 0..4_097 {
        text.push_str(&format!(
            "{{\"user\": \"u\", \"item\": \"m1\", \"timestamp\": {i}, \"kind\": \"k{i}\"}}\n"
        ));
    }
    let path = write(dir.path(), "events.jsonl", &text);
    let (line, reason) = import_error(interactions_jsonl(&db, &path, &opts(100)));
    assert_eq!(line, 4_097, "{reason}");
    assert!(
        reason.contains("over the limit of 4096 distinct kinds"),
        "{reason}"
    );
    assert_eq!(
        db.stats().unwrap().interactions_recorded,
        0,
        "rows were committed"
    );
    // The kinds already stored count too.
    let first: String = text.lines().take(4_000).map(|l| format!("{l}\n")).collect();
    let path = write(dir.path(), "first.jsonl", &first);
    interactions_jsonl(&db, &path, &opts(100)).unwrap();
    let rest: String = text.lines().skip(4_000).map(|l| format!("{l}\n")).collect();
    let path = write(dir.path(), "rest.jsonl", &rest);
    let (line, _) = import_error(interactions_jsonl(&db, &path, &opts(100)));
    assert_eq!(line, 97);
    assert_eq!(db.stats().unwrap().interactions_recorded, 4_000);
}

#[test]
fn the_attribute_count_limit_says_entries() {
    let (_dir, db) = common::fresh();
    let mut item = Item::new("a");
    for i in 0..257 {
        item = item.attribute(format!("a{i}"), "v");
    }
    let msg = db.put_items(&[item]).unwrap_err().to_string();
    assert!(
        msg.contains("257 entries, over the limit of 256 entries"),
        "{msg}"
    );
}
