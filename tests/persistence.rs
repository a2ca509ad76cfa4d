//! Goal: everything written to a database survives closing it and opening it again, in both
//! durability modes. Method: write items (vectors, attributes, text), interactions (kinds,
//! weights), a delete; snapshot every observable answer (get_item, item_id, history, stats,
//! recommend); close every handle; reopen the directory and compare the snapshot field by
//! field; check() must be clean before and after.

mod common;

use common::{assert_clean, content, keys, snapshot, tempdir};
use convergedb::{Config, Db, Durability, Interaction, Item};

const ITEMS: [&str; 6] = ["m1", "m2", "m3", "m4", "m5", "gone"];
const USERS: [&str; 4] = ["alice", "bob", "carol", "nobody"];

fn populate(db: &Db) {
    db.put_items(&[
        Item::new("m1")
            .title("Toy Story")
            .description("Toys come alive")
            .attribute("year", "1995")
            .attribute("genres", "Animation Comedy")
            .vector("emb", vec![0.1, 0.2, 0.3, 0.4])
            .vector("img", vec![-1.5, 2.25]),
        Item::new("m2")
            .title("Heat")
            .vector("emb", vec![1.0, -2.0, 3.0, f32::MIN_POSITIVE]),
        Item::new("m3").title("Casino").attribute("year", "1995"),
        Item::new("m4")
            .title("Ünïcödé ✓")
            .description("multi\nline"),
        Item::new("m5").vector("img", vec![0.0, -0.0]),
        Item::new("gone").title("to be deleted"),
    ])
    .expect("put items");
    db.record_interactions(&[
        Interaction::new("alice", "m1", 100).kind("view"),
        Interaction::new("alice", "m2", 50)
            .kind("rating")
            .weight(4.5),
        Interaction::new("bob", "m1", 10),
        Interaction::new("bob", "gone", 11)
            .kind("click")
            .weight(0.25),
        Interaction::new("carol", "m3", -5).kind("view"),
    ])
    .expect("record interactions");
    db.record_interactions(&[
        Interaction::new("alice", "m3", 75),
        Interaction::new("carol", "m1", 7),
    ])
    .expect("record more interactions");
    assert_eq!(db.delete_items(&["gone"]).expect("delete"), 1);
}

fn assert_populated(db: &Db) {
    let s = content(db);
    assert_eq!(
        (s.items, s.deleted_items, s.users, s.interactions),
        (5, 1, 3, 7)
    );
    assert_eq!(s.interactions_recorded, 7);
    assert_eq!(s.vector_dims.get("emb"), Some(&4));
    assert_eq!(s.vector_dims.get("img"), Some(&2));
    assert_eq!(s.kinds, vec!["view", "rating", "click"]);

    let m1 = db.get_item("m1").unwrap().expect("m1 present");
    assert_eq!(m1.title, "Toy Story");
    assert_eq!(m1.vectors["img"], vec![-1.5, 2.25]);
    assert_eq!(m1.attributes["year"], "1995");
    assert_eq!(db.get_item("gone").unwrap(), None);

    let alice = db.history("alice").unwrap();
    assert_eq!(common::history_keys(&alice), vec!["m2", "m3", "m1"]);
    assert_eq!(alice.entries[0].kind.as_deref(), Some("rating"));
    assert_eq!(alice.entries[0].weight, 4.5);
    assert_eq!(alice.version, 2);
    let bob = db.history("bob").unwrap();
    assert!(!bob.entries[1].live, "bob's entry for the deleted item");
    assert_eq!(bob.entries[1].item, "gone");

    // m1 has 3 interactions, then m3 (2), m2 (1); "gone" is deleted.
    let rec = db.recommend("nobody", 10).unwrap();
    assert_eq!(keys(&rec), vec!["m1", "m3", "m2", "m4", "m5"]);
}

fn round_trip(config: impl Fn(&std::path::Path) -> Config) {
    let dir = tempdir();
    let db = config(dir.path()).open().unwrap();
    populate(&db);
    assert_populated(&db);
    assert_clean(&db);
    let before = snapshot(&db, &ITEMS, &USERS);
    // item_id() only names live items; the deleted one's id is still in bob's history.
    let gone_id = db.history("bob").unwrap().entries[1].item_id;
    let live_ids: Vec<u64> = ITEMS[..5]
        .iter()
        .map(|k| db.item_id(k).unwrap().unwrap())
        .collect();
    assert_eq!(live_ids, vec![1, 2, 3, 4, 5]);
    assert_eq!(gone_id, 6);
    db.close().unwrap();

    let db = config(dir.path()).open().unwrap();
    let after = snapshot(&db, &ITEMS, &USERS);
    assert_eq!(before.content, after.content);
    assert_eq!(before.items, after.items);
    assert_eq!(before.histories, after.histories);
    assert_eq!(before.recommendations, after.recommendations);
    assert_eq!(before, after);
    assert_populated(&db);
    assert_clean(&db);

    // Id allocation survives too: a new item gets a fresh id, never a reused one, and a revived
    // item keeps its old id.
    let new_ids = db
        .put_items(&[Item::new("m6"), Item::new("gone").title("back")])
        .unwrap();
    assert_eq!(new_ids, vec![7, gone_id]);
    assert!(db.history("bob").unwrap().entries[1].live);
    assert_clean(&db);
    db.close().unwrap();

    let db = config(dir.path()).open().unwrap();
    assert_eq!(db.get_item("gone").unwrap().unwrap().title, "back");
    assert_eq!(db.item_id("m6").unwrap(), Some(7));
    assert_eq!(content(&db).items, 7);
    assert_clean(&db);
}

#[test]
fn buffered_database_survives_close_and_reopen() {
    round_trip(|p| Config::new(p));
}

#[test]
fn sync_database_survives_close_and_reopen() {
    round_trip(|p| Config::new(p).durability(Durability::Sync));
}

#[test]
fn stats_report_the_handle_durability() {
    let dir = tempdir();
    let db = Config::new(dir.path())
        .durability(Durability::Sync)
        .open()
        .unwrap();
    assert_eq!(db.stats().unwrap().durability, Durability::Sync);
    db.close().unwrap();
    let db = Config::new(dir.path()).open().unwrap();
    assert_eq!(
        db.stats().unwrap().durability,
        Durability::Buffered {
            flush_every_ms: 500
        }
    );
}

#[test]
fn dropping_every_clone_without_close_keeps_the_data() {
    let dir = tempdir();
    let db = common::open(dir.path());
    let clone = db.clone();
    populate(&clone);
    let before = snapshot(&db, &ITEMS, &USERS);
    // close() on one clone flushes; the files stay open until the last clone goes.
    db.close().unwrap();
    clone
        .record_interactions(&[Interaction::new("dave", "m4", 1)])
        .unwrap();
    drop(clone);

    let db = common::open(dir.path());
    let after = snapshot(&db, &ITEMS, &USERS);
    assert_eq!(before.items, after.items);
    assert_eq!(before.histories, after.histories);
    assert_eq!(
        common::history_keys(&db.history("dave").unwrap()),
        vec!["m4"]
    );
    assert_eq!(content(&db).users, 4);
    assert_clean(&db);
}

#[test]
fn a_crash_image_taken_after_sync_writes_recovers_them() {
    // A copy of the directory taken while the handle is still open is what a process crash
    // right after the writes would leave behind: with Durability::Sync it must recover every
    // write that returned, and recover to a consistent database. (A copy reads through the OS
    // cache, so this checks what a process crash leaves, not that the fsync happened.)
    let dir = tempdir();
    let db = Config::new(dir.path())
        .durability(Durability::Sync)
        .open()
        .unwrap();
    populate(&db);
    let expected = snapshot(&db, &ITEMS, &USERS);

    let copy = tempdir();
    copy_dir(dir.path(), copy.path());
    let crashed = Config::new(copy.path()).open().unwrap();
    let recovered = snapshot(&crashed, &ITEMS, &USERS);
    assert_eq!(expected.items, recovered.items);
    assert_eq!(expected.histories, recovered.histories);
    assert_eq!(expected.recommendations, recovered.recommendations);
    assert_eq!(expected.content, recovered.content);
    assert_clean(&crashed);
    drop(db);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn close_and_reopen_at_once_many_times_from_several_threads() {
    // sled releases the file lock of a closed handle asynchronously; reopening right after
    // close() must still work (open waits for the lock), and every cycle sees the last one's
    // writes.
    let workers: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let dir = tempdir();
                for i in 0..40u64 {
                    let db = Config::new(dir.path())
                        .open()
                        .unwrap_or_else(|e| panic!("thread {t}, reopen {i}: {e}"));
                    assert_eq!(content(&db).items, i, "thread {t}, reopen {i}");
                    db.put_items(&[Item::new(format!("k{i}"))]).unwrap();
                    db.record_interactions(&[Interaction::new("u", format!("k{i}"), i as i64)])
                        .unwrap();
                    db.close().unwrap();
                }
                let db = Config::new(dir.path()).open().unwrap();
                assert_eq!(db.history("u").unwrap().entries.len(), 40);
                assert_clean(&db);
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker thread");
    }
}
