//! The update-trigger layer with the shipped model: cached lists, stale-while-revalidate, model
//! swap, item deletion while a list holds the item, worker panics, the durable queue across a
//! reopen. Most tests use `refresh_workers(0)` (the queue drains on the test's thread in
//! `wait_idle`), so what is queued when is deterministic; one runs the background workers.
//!
//! Needs the ONNX Runtime library (`ORT_DYLIB_PATH`, set by `./scripts/test`).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::bundle;
use convergedb::{Config, Db, Error, Interaction, Source};

const USERS: usize = 12;

fn setup(workers: usize) -> (tempfile::TempDir, Db) {
    let dir = common::tempdir();
    let db = bundle::open_with_catalog(Config::new(dir.path()).refresh_workers(workers));
    db.record_interactions(&bundle::synthetic_histories(USERS, 8, 1))
        .unwrap();
    (dir, db)
}

fn users() -> Vec<String> {
    (0..USERS).map(|u| format!("u{u}")).collect()
}

/// Every user's answer is a fresh model list equal to a synchronous generation.
#[track_caller]
fn assert_all_fresh(db: &Db) {
    for user in users() {
        let rec = db.recommend(&user, 10).unwrap();
        assert_eq!(rec.source, Source::Model, "user {user}");
        assert!(!rec.stale, "user {user} is stale after wait_idle");
        assert_eq!(rec.history_version, db.history(&user).unwrap().version);
        let want = db.generate(&user, 10).unwrap();
        assert_eq!(common::keys(&rec), common::keys(&want), "user {user}");
    }
}

#[test]
fn nothing_is_queued_before_a_model_is_attached_then_every_user_gets_a_list() {
    let (_dir, db) = setup(0);
    assert_eq!(db.refresh_stats().queued, 0);
    assert_eq!(db.recommend("u1", 5).unwrap().source, Source::Popularity);
    bundle::attach(&db);
    db.wait_idle().unwrap();
    assert_eq!(db.stats().unwrap().cached_lists, USERS as u64);
    assert_all_fresh(&db);
    let rec = db.recommend("u3", 10).unwrap();
    let stamps = rec.stamps.unwrap();
    assert_eq!(stamps.model_id, db.model_info().unwrap().model_id);
    assert_eq!(stamps.sid_version, db.stats().unwrap().sid.unwrap().version);
    common::assert_clean(&db);
}

#[test]
fn a_new_interaction_serves_the_stale_list_flagged_then_refreshes_it() {
    let (_dir, db) = setup(0);
    bundle::attach(&db);
    db.wait_idle().unwrap();
    let before = db.recommend("u0", 10).unwrap();
    assert!(!before.stale);
    // The user interacts with the list's top item.
    let top = before.items[0].key.clone();
    db.record_interactions(&[Interaction::new("u0", top.clone(), 100)])
        .unwrap();
    assert_eq!(db.refresh_stats().queued, 1);
    let stale = db.recommend("u0", 10).unwrap();
    assert_eq!(stale.source, Source::Model);
    assert!(stale.stale);
    assert_eq!(stale.history_version, before.history_version);
    assert!(
        stale.items.iter().all(|i| i.key != top),
        "the item now in the history is filtered from the stale list"
    );
    assert_eq!(stale.items.len(), before.items.len() - 1);
    common::assert_clean(&db);
    db.wait_idle().unwrap();
    let fresh = db.recommend("u0", 10).unwrap();
    assert!(!fresh.stale);
    assert_eq!(fresh.history_version, before.history_version + 1);
    assert_all_fresh(&db);
    common::assert_clean(&db);
}

#[test]
fn a_model_swap_serves_old_lists_flagged_until_each_is_refreshed() {
    let (dir, db) = setup(0);
    bundle::attach(&db);
    db.wait_idle().unwrap();
    let old_id = db.model_info().unwrap().model_id;
    let other = bundle::renamed_bundle(dir.path(), "ml100k-swapped");
    db.attach_model(&other, convergedb::ModelOptions::new())
        .unwrap();
    for user in users() {
        let rec = db.recommend(&user, 10).unwrap();
        assert_eq!(rec.source, Source::Model);
        assert!(
            rec.stale,
            "user {user}: a list of the previous model is stale"
        );
        assert_eq!(rec.stamps.unwrap().model_id, old_id);
    }
    common::assert_clean(&db);
    db.wait_idle().unwrap();
    for user in users() {
        let rec = db.recommend(&user, 10).unwrap();
        assert!(!rec.stale);
        assert_eq!(rec.stamps.unwrap().model_id, "ml100k-swapped");
    }
    assert_all_fresh(&db);
}

#[test]
fn deleting_an_item_a_list_holds_filters_it_at_once_and_repairs_the_lists() {
    let (_dir, db) = setup(0);
    bundle::attach(&db);
    db.wait_idle().unwrap();
    let victim = db.recommend("u2", 10).unwrap().items[0].key.clone();
    let holders: Vec<String> = users()
        .into_iter()
        .filter(|u| {
            db.recommend(u, 20)
                .unwrap()
                .items
                .iter()
                .any(|i| i.key == victim)
        })
        .collect();
    let before: Vec<_> = users()
        .iter()
        .map(|u| db.recommend(u, 20).unwrap())
        .collect();
    db.delete_items(&[&victim]).unwrap();
    for user in &holders {
        let rec = db.recommend(user, 20).unwrap();
        assert!(rec.items.iter().all(|i| i.key != victim), "user {user}");
        assert!(rec.stale, "user {user}: its list held a deleted item");
    }
    common::assert_clean(&db);
    db.wait_idle().unwrap();
    for (user, old) in users().iter().zip(&before) {
        let rec = db.recommend(user, 20).unwrap();
        assert!(!rec.stale, "user {user}");
        assert!(rec.items.iter().all(|i| i.key != victim));
        if holders.contains(user) {
            // Regenerated without the item.
            let want = db.generate(user, 20).unwrap();
            assert_eq!(common::keys(&rec), common::keys(&want), "user {user}");
        } else {
            // A list that did not hold it is still a valid answer and is kept (beam search
            // over the smaller trie may now rank differently: not a reason to recompute).
            assert_eq!(rec, *old, "user {user}");
        }
    }
    common::assert_clean(&db);
}

#[test]
fn refresh_now_and_refresh_and_their_errors() {
    let (_dir, db) = setup(0);
    assert!(matches!(db.refresh_now("u1"), Err(Error::NoModel)));
    bundle::attach(&db);
    let rec = db.refresh_now("u1").unwrap();
    assert!(!rec.stale);
    assert_eq!(
        common::keys(&rec),
        common::keys(&db.generate("u1", 20).unwrap())
    );
    assert!(matches!(
        db.refresh_now("nobody"),
        Err(Error::UnknownUser { .. })
    ));
    assert!(matches!(
        db.refresh(&["u1", "nobody"]),
        Err(Error::UnknownUser { .. })
    ));
    db.wait_idle().unwrap();
    db.refresh(&["u1", "u2"]).unwrap();
    assert_eq!(db.refresh_stats().queued, 2);
    assert!(db.recommend("u1", 5).unwrap().stale);
    common::assert_clean(&db);
    db.wait_idle().unwrap();
    assert!(!db.recommend("u1", 5).unwrap().stale);
}

#[test]
fn wait_idle_fails_when_nothing_can_refresh_the_queue() {
    let (_dir, db) = setup(0);
    bundle::attach(&db);
    db.wait_idle().unwrap();
    db.detach_model();
    db.record_interactions(&[Interaction::new("u5", "50", 100)])
        .unwrap();
    assert!(matches!(db.wait_idle(), Err(Error::NoModel)));
    // Lists of the last attached model are still served, the changed one flagged.
    assert!(db.recommend("u5", 5).unwrap().stale);
    assert!(!db.recommend("u6", 5).unwrap().stale);
}

#[test]
fn the_queue_survives_a_reopen_and_drains_after_it() {
    let dir = common::tempdir();
    {
        let db = bundle::open_with_catalog(Config::new(dir.path()).refresh_workers(0));
        db.record_interactions(&bundle::synthetic_histories(USERS, 8, 1))
            .unwrap();
        bundle::attach(&db);
        db.wait_idle().unwrap();
        let more: Vec<Interaction> = (0..5)
            .map(|u| Interaction::new(format!("u{u}"), "100", 100))
            .collect();
        db.record_interactions(&more).unwrap();
        assert_eq!(db.refresh_stats().queued, 5);
        db.close().unwrap();
    }
    let db = Config::new(dir.path()).refresh_workers(0).open().unwrap();
    assert_eq!(db.refresh_stats().queued, 5, "the stale records are loaded");
    common::assert_clean(&db);
    for u in 0..USERS {
        let rec = db.recommend(&format!("u{u}"), 5).unwrap();
        assert_eq!(rec.stale, u < 5, "user u{u}");
    }
    bundle::attach(&db);
    db.wait_idle().unwrap();
    assert_all_fresh(&db);
    common::assert_clean(&db);
}

#[test]
fn background_workers_refresh_and_survive_a_panicking_batch() {
    let (_dir, db) = setup(1);
    bundle::attach(&db);
    db.wait_idle().unwrap();
    assert_all_fresh(&db);
    db.inject_refresh_panic(Some("u4"));
    db.record_interactions(&[
        Interaction::new("u4", "60", 100),
        Interaction::new("u7", "61", 100),
    ])
    .unwrap();
    // u4 fails three times (backing off) and is parked; u7 is refreshed on its own retry.
    let mut waited = Duration::ZERO;
    while db.refresh_stats().parked == 0 && waited < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
        waited += Duration::from_millis(50);
    }
    let s = db.refresh_stats();
    assert_eq!(s.parked, 1, "{s:?}");
    assert!(s.panics >= 1);
    assert!(s.last_panic.unwrap().contains("injected fault"));
    db.wait_idle().unwrap();
    assert!(db.recommend("u4", 5).unwrap().stale, "u4 stays stale");
    let seen: HashSet<bool> = (0..USERS)
        .filter(|&u| u != 4)
        .map(|u| db.recommend(&format!("u{u}"), 5).unwrap().stale)
        .collect();
    assert_eq!(seen, HashSet::from([false]));
    common::assert_clean(&db);
    // The next trigger after the fault is gone refreshes it.
    db.inject_refresh_panic(None);
    db.record_interactions(&[Interaction::new("u4", "62", 101)])
        .unwrap();
    db.wait_idle().unwrap();
    assert_all_fresh(&db);
    assert_eq!(db.refresh_stats().workers, 1);
    db.close().unwrap();
}

#[test]
fn recommend_into_reuses_a_buffer_and_answers_like_recommend() {
    let (_dir, db) = setup(0);
    bundle::attach(&db);
    db.wait_idle().unwrap();
    // One stale user, one without history (popularity), the rest fresh; k varies so the
    // buffer's item list grows and shrinks.
    db.record_interactions(&[Interaction::new("u3", "70", 100)])
        .unwrap();
    let mut buf = convergedb::Recommendation::default();
    let mut seen_sources = HashSet::new();
    for (i, user) in users()
        .into_iter()
        .chain(["nobody".to_string()])
        .enumerate()
    {
        for k in [3, 20, 1, 10] {
            db.recommend_into(&user, k, &mut buf).unwrap();
            let want = db.recommend(&user, k).unwrap();
            assert_eq!(buf, want, "user {user} k {k} (#{i})");
            seen_sources.insert((want.source, want.stale));
        }
    }
    assert!(seen_sources.contains(&(Source::Model, false)));
    assert!(seen_sources.contains(&(Source::Model, true)));
    assert!(seen_sources.contains(&(Source::Popularity, false)));
}

#[test]
fn a_new_tokenization_makes_every_list_stale_until_a_fitting_model_refreshes_it() {
    let (_dir, db) = setup(0);
    bundle::attach(&db);
    db.wait_idle().unwrap();
    let first = db.stats().unwrap().sid.unwrap().version;
    // A tokenization of our own: the attached model was trained on another one.
    let mut opts = convergedb::TokenizeOptions::new("sasrec");
    opts.codes = 16;
    opts.iterations = 5;
    db.tokenize(&opts, None).unwrap();
    for user in users() {
        let rec = db.recommend(&user, 10).unwrap();
        assert_eq!(rec.source, Source::Model);
        assert!(rec.stale, "user {user}: computed under version {first}");
        assert_eq!(rec.stamps.unwrap().sid_version, first);
    }
    common::assert_clean(&db);
    assert!(matches!(
        db.wait_idle(),
        Err(Error::ForeignTokenization { .. })
    ));
    // The bundle's tokenization again (a newer version with the bundle's fingerprint): the
    // model fits and every list is refreshed under it.
    db.import_tokenization(&bundle::bundle().join("tokenization.json"))
        .unwrap();
    let now = db.stats().unwrap().sid.unwrap().version;
    assert!(now > first + 1);
    db.wait_idle().unwrap();
    for user in users() {
        let rec = db.recommend(&user, 10).unwrap();
        assert!(!rec.stale);
        assert_eq!(rec.stamps.unwrap().sid_version, now);
    }
    assert_all_fresh(&db);
    common::assert_clean(&db);
}
