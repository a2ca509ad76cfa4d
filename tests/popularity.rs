//! Goal: recommendations come from the popularity ranking: live items ordered by retained
//! interaction count, ties by internal id (insertion order), without the user's own history.
//! Method: small catalogs whose insertion order differs from key order, interactions that give
//! known counts, then exact expected lists (keys and scores) after each change: deletes,
//! revivals, history-limit eviction, unknown users.

mod common;

use common::{assert_clean, fresh, keys, tempdir};
use convergedb::{Config, Db, Interaction, Item, Source};

/// Items inserted in the order z, y, x, w, v, u (ids 1..=6), with counts
/// x: 3, v: 2, z: 2, w: 1, y: 0, u: 0.
fn catalog(db: &Db) {
    let order = ["z", "y", "x", "w", "v", "u"];
    let ids = db
        .put_items(&order.map(|k| Item::new(k).title(k.to_uppercase())))
        .unwrap();
    assert_eq!(ids, vec![1, 2, 3, 4, 5, 6]);
    db.record_interactions(&[
        Interaction::new("p1", "x", 1),
        Interaction::new("p2", "x", 2),
        Interaction::new("p3", "x", 3),
        Interaction::new("p1", "v", 4),
        Interaction::new("p2", "v", 5),
        Interaction::new("p3", "z", 6),
        Interaction::new("p4", "z", 7),
        Interaction::new("p4", "w", 8),
    ])
    .unwrap();
}

fn scores(db: &Db, user: &str, k: usize) -> Vec<(String, f64)> {
    db.recommend(user, k)
        .unwrap()
        .items
        .into_iter()
        .map(|i| (i.key, i.score))
        .collect()
}

fn owned(v: &[(&str, f64)]) -> Vec<(String, f64)> {
    v.iter().map(|(k, s)| (k.to_string(), *s)).collect()
}

#[test]
fn ranks_by_count_then_insertion_order() {
    let (_dir, db) = fresh();
    catalog(&db);
    let rec = db.recommend("newcomer", 10).unwrap();
    assert_eq!(rec.source, Source::Popularity);
    assert_eq!(rec.user, "newcomer");
    assert_eq!(rec.history_version, 0);
    // Ties: z (id 1) before v (id 5); y (id 2) before u (id 6): id order, not key order.
    assert_eq!(
        scores(&db, "newcomer", 10),
        owned(&[
            ("x", 3.0),
            ("z", 2.0),
            ("v", 2.0),
            ("w", 1.0),
            ("y", 0.0),
            ("u", 0.0)
        ])
    );
    // The ids reported are the internal ids.
    let ids: Vec<u64> = rec.items.iter().map(|i| i.item_id).collect();
    assert_eq!(ids, vec![3, 1, 5, 4, 2, 6]);
    // k cuts the list.
    assert_eq!(keys(&db.recommend("newcomer", 2).unwrap()), vec!["x", "z"]);
    assert_clean(&db);
}

#[test]
fn excludes_the_users_own_history() {
    let (_dir, db) = fresh();
    catalog(&db);
    // p1 saw x and v; p4 saw z and w.
    assert_eq!(
        scores(&db, "p1", 10),
        owned(&[("z", 2.0), ("w", 1.0), ("y", 0.0), ("u", 0.0)])
    );
    let rec = db.recommend("p4", 2).unwrap();
    assert_eq!(keys(&rec), vec!["x", "v"]);
    assert_eq!(rec.history_version, db.history("p4").unwrap().version);
    // Fewer than k eligible items: the list is shorter, not padded.
    db.record_interactions(&[
        Interaction::new("p1", "z", 10),
        Interaction::new("p1", "w", 11),
        Interaction::new("p1", "y", 12),
    ])
    .unwrap();
    assert_eq!(keys(&db.recommend("p1", 10).unwrap()), vec!["u"]);
    db.record_interactions(&[Interaction::new("p1", "u", 13)])
        .unwrap();
    assert!(db.recommend("p1", 10).unwrap().items.is_empty());
    assert_clean(&db);
}

#[test]
fn counts_follow_new_interactions() {
    let (_dir, db) = fresh();
    catalog(&db);
    // Repeated interactions count each time; w overtakes everything.
    db.record_interactions(&[
        Interaction::new("q", "w", 1),
        Interaction::new("q", "w", 2),
        Interaction::new("r", "w", 3),
    ])
    .unwrap();
    assert_eq!(
        scores(&db, "nobody", 3),
        owned(&[("w", 4.0), ("x", 3.0), ("z", 2.0)])
    );
    assert_clean(&db);
}

#[test]
fn deleted_items_never_come_back_until_revived() {
    let (_dir, db) = fresh();
    catalog(&db);
    db.delete_items(&["x", "y"]).unwrap();
    let all = scores(&db, "nobody", 10);
    assert_eq!(
        all,
        owned(&[("z", 2.0), ("v", 2.0), ("w", 1.0), ("u", 0.0)])
    );
    for user in ["p1", "p2", "p3", "p4", "nobody"] {
        let rec = db.recommend(user, 10).unwrap();
        assert!(
            !keys(&rec).iter().any(|k| *k == "x" || *k == "y"),
            "{user}: {:?}",
            keys(&rec)
        );
    }
    // Histories still list the deleted item, marked not live.
    let p1 = db.history("p1").unwrap();
    assert!(p1.entries.iter().any(|e| e.item == "x" && !e.live));
    assert_clean(&db);

    // Still excluded after a reopen.
    let dir = tempdir();
    let db2 = common::open(dir.path());
    catalog(&db2);
    db2.delete_items(&["x"]).unwrap();
    db2.close().unwrap();
    let db2 = common::open(dir.path());
    assert_eq!(keys(&db2.recommend("nobody", 1).unwrap()), vec!["z"]);
    assert_clean(&db2);

    // Revived: x comes back with its old id and its retained count; y too.
    let ids = db.put_items(&[Item::new("x"), Item::new("y")]).unwrap();
    assert_eq!(ids, vec![3, 2]);
    assert_eq!(
        scores(&db, "nobody", 10),
        owned(&[
            ("x", 3.0),
            ("z", 2.0),
            ("v", 2.0),
            ("w", 1.0),
            ("y", 0.0),
            ("u", 0.0)
        ])
    );
    // ... and still excluded for the users who saw it.
    assert!(!keys(&db.recommend("p1", 10).unwrap()).contains(&"x"));
    assert_clean(&db);
}

#[test]
fn interactions_while_deleted_are_refused_so_counts_stay() {
    let (_dir, db) = fresh();
    catalog(&db);
    db.delete_items(&["v"]).unwrap();
    assert!(db
        .record_interactions(&[Interaction::new("p9", "v", 1)])
        .is_err());
    db.put_items(&[Item::new("v")]).unwrap();
    assert_eq!(scores(&db, "nobody", 3)[2], ("v".to_string(), 2.0));
}

#[test]
fn history_limit_eviction_decrements_popularity() {
    let dir = tempdir();
    let db = Config::new(dir.path()).history_limit(3).open().unwrap();
    db.put_items(&["a", "b", "c", "d", "e"].map(Item::new))
        .unwrap();
    db.record_interactions(&[
        Interaction::new("u", "a", 10),
        Interaction::new("u", "b", 20),
        Interaction::new("u", "c", 30),
        Interaction::new("other", "a", 5),
    ])
    .unwrap();
    assert_eq!(
        scores(&db, "nobody", 3),
        owned(&[("a", 2.0), ("b", 1.0), ("c", 1.0)])
    );

    // A fourth, newer interaction evicts the oldest (a at 10).
    db.record_interactions(&[Interaction::new("u", "d", 40)])
        .unwrap();
    let h = db.history("u").unwrap();
    assert_eq!(common::history_keys(&h), vec!["b", "c", "d"]);
    assert_eq!(h.recorded, 4);
    assert_eq!(
        scores(&db, "nobody", 5),
        owned(&[("a", 1.0), ("b", 1.0), ("c", 1.0), ("d", 1.0), ("e", 0.0)])
    );
    // The evicted item is no longer excluded for u.
    assert_eq!(keys(&db.recommend("u", 5).unwrap()), vec!["a", "e"]);
    let s = db.stats().unwrap();
    assert_eq!((s.interactions, s.interactions_recorded), (4, 5));
    assert_clean(&db);

    // An interaction older than everything retained is evicted at once: the history keeps its
    // entries, its version still moves, and no count changes.
    let version = h.version;
    db.record_interactions(&[Interaction::new("u", "e", 1)])
        .unwrap();
    let h = db.history("u").unwrap();
    assert_eq!(common::history_keys(&h), vec!["b", "c", "d"]);
    assert_eq!(h.version, version + 1);
    assert_eq!(h.recorded, 5);
    assert_eq!(scores(&db, "nobody", 5)[4], ("e".to_string(), 0.0));

    // One batch that overflows the limit by itself: only the 3 newest stay.
    db.record_interactions(&[
        Interaction::new("w", "e", 3),
        Interaction::new("w", "a", 1),
        Interaction::new("w", "e", 4),
        Interaction::new("w", "b", 2),
        Interaction::new("w", "c", 5),
    ])
    .unwrap();
    let h = db.history("w").unwrap();
    assert_eq!(common::history_keys(&h), vec!["e", "e", "c"]);
    assert_eq!(
        scores(&db, "nobody", 5),
        owned(&[("c", 2.0), ("e", 2.0), ("a", 1.0), ("b", 1.0), ("d", 1.0)])
    );
    assert_clean(&db);

    // Eviction survives a reopen.
    db.close().unwrap();
    let db = Config::new(dir.path()).history_limit(3).open().unwrap();
    assert_eq!(
        scores(&db, "nobody", 5),
        owned(&[("c", 2.0), ("e", 2.0), ("a", 1.0), ("b", 1.0), ("d", 1.0)])
    );
    assert_clean(&db);
}

#[test]
fn unknown_user_gets_the_plain_top_list() {
    let (_dir, db) = fresh();
    catalog(&db);
    let stranger = db.recommend("stranger", 4).unwrap();
    let top = keys(&stranger);
    assert_eq!(top, vec!["x", "z", "v", "w"]);
    assert_eq!(stranger.history_version, 0);
    assert_eq!(stranger.source, Source::Popularity);
    // Same list as any other user without history, and recommend creates no user.
    assert_eq!(keys(&db.recommend("another", 4).unwrap()), top);
    assert!(matches!(
        db.history("stranger"),
        Err(convergedb::Error::UnknownUser { .. })
    ));
    assert_eq!(db.stats().unwrap().users, 4);
}

#[test]
fn empty_catalog_gives_an_empty_list() {
    let (_dir, db) = fresh();
    let rec = db.recommend("anyone", 5).unwrap();
    assert!(rec.items.is_empty());
    assert_eq!(rec.source, Source::Popularity);
}

#[test]
fn long_and_short_histories_exclude_exactly_their_items() {
    // The read path scans short histories in place and sorts long ones (over 256 entries):
    // both must exclude exactly the user's items.
    let (_dir, db) = fresh();
    let items: Vec<Item> = (0..400).map(|i| Item::new(format!("i{i:03}"))).collect();
    db.put_items(&items).unwrap();
    // Popularity: i000 has the most interactions, then i001, ... (from "crowd" users).
    let mut crowd = Vec::new();
    for i in 0..400usize {
        for c in 0..(400 - i) / 40 + 1 {
            crowd.push(Interaction::new(
                format!("crowd{c}"),
                format!("i{i:03}"),
                i as i64,
            ));
        }
    }
    db.record_interactions(&crowd).unwrap();
    let all = scores(&db, "nobody", 400);
    assert_eq!(all.len(), 400);
    for (len, user) in [(10usize, "short"), (300, "long")] {
        // The user saw every other item of the top 2 * len.
        let seen: Vec<String> = all
            .iter()
            .step_by(2)
            .take(len)
            .map(|(k, _)| k.clone())
            .collect();
        let events: Vec<Interaction> = seen
            .iter()
            .enumerate()
            .map(|(t, k)| Interaction::new(user, k.clone(), t as i64))
            .collect();
        db.record_interactions(&events).unwrap();
        let got = db.recommend(user, 50).unwrap();
        let counts = scores(&db, "nobody", 400);
        let expected: Vec<String> = counts
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| !seen.contains(k))
            .take(50)
            .collect();
        assert_eq!(keys(&got), expected, "user with {len} history items");
    }
    assert_clean(&db);
}
