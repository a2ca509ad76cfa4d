//! End to end on real data: MovieLens-100K imported without each user's last two interactions
//! (the training pipeline's held-out validation and test items), every list computed, then the
//! held-out interactions replayed as a stream in timestamp order; after `wait_idle()` every
//! user's list is current and equals a synchronous `generate` on the final history.
//!
//! Needs MovieLens-100K (`CONVERGEDB_ML100K`, set by `./scripts/test`; skips with a message when
//! it is absent) and the ONNX Runtime library.

mod common;

use std::path::PathBuf;

use common::bundle;
use convergedb::import::{self, ImportOptions};
use convergedb::{Config, Source};

#[test]
fn replaying_the_held_out_interactions_leaves_every_list_current() {
    let Some(ml) = std::env::var_os("CONVERGEDB_ML100K").map(PathBuf::from) else {
        eprintln!("skipped: set CONVERGEDB_ML100K to the ml-100k folder (./scripts/test does)");
        return;
    };
    let dir = common::tempdir();
    let db = Config::new(dir.path()).refresh_workers(1).open().unwrap();
    let opts = ImportOptions {
        hold_out_last: 2,
        ..Default::default()
    };
    let report = import::movielens(&db, &ml, &opts).unwrap();
    let users = db.stats().unwrap().users as usize;
    assert_eq!(report.held_out.len(), 2 * users);
    bundle::load_catalog(&db);
    bundle::attach(&db);
    db.wait_idle().unwrap();
    let before = db.refresh_stats().lists_written;
    assert_eq!(
        before as usize, users,
        "one list per user after the warm-up"
    );
    assert_eq!(
        db.stats().unwrap().cached_lists as usize,
        users,
        "one list per user after the warm-up"
    );
    for chunk in report.held_out.chunks(25) {
        db.record_interactions(chunk).unwrap();
    }
    db.wait_idle().unwrap();
    let stats = db.refresh_stats();
    assert_eq!(stats.failures, 0, "{:?}", stats.last_error);
    common::assert_clean(&db);
    let all: Vec<String> = db.users().map(Result::unwrap).collect();
    assert_eq!(all.len(), users);
    let mut differ = Vec::new();
    let mut short = 0;
    for chunk in all.chunks(64) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let want = db.generate_batch(&refs, 10).unwrap();
        for (user, want) in chunk.iter().zip(want) {
            let rec = db.recommend(user, 10).unwrap();
            assert!(!rec.stale, "{user}");
            if want.items.len() < 10 {
                short += 1;
            }
            if want.items.is_empty() {
                // Every beam ended on a history item (heavy users): the cached list is empty
                // and the read falls back to the other sources.
                assert_ne!(rec.source, Source::Model, "{user}");
                continue;
            }
            assert_eq!(rec.source, Source::Model, "{user}");
            assert_eq!(rec.history_version, db.history(user).unwrap().version);
            if common::keys(&rec) != common::keys(&want) {
                differ.push(format!(
                    "{user}: cached {:?} vs generated {:?}",
                    common::keys(&rec),
                    common::keys(&want)
                ));
            }
        }
    }
    assert!(
        differ.is_empty(),
        "{} users differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
    eprintln!(
        "{users} users, {} held-out interactions replayed; {} lists written after the warm-up ({} conflicts); {short} lists shorter than 10",
        report.held_out.len(),
        stats.lists_written - before,
        stats.conflicts
    );
}
