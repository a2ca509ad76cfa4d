//! Invariants 3, 4 and 5 under concurrency: two writers (each owning half of the users, so an
//! acknowledged write's history version is known), a deleter, two readers and the background
//! refresh worker run together — 60 s in a release build (`./scripts/test` runs it so), 8 s in a
//! debug build, `CONVERGEDB_REFRESH_SECS` to choose. Readers check every answer against what
//! was acknowledged before the read began: no deleted item, and a list served as current is at
//! least as new as the user's last acknowledged history write. `check()` runs every few seconds
//! while everything runs, and at the end, after `wait_idle`, every user's list is current and
//! equals a synchronous generation.
//!
//! Needs the ONNX Runtime library (`ORT_DYLIB_PATH`, set by `./scripts/test`).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::bundle;
use convergedb::{Config, Db, Error, Interaction, Source};
use parking_lot::{Mutex, RwLock};
use rand::{Rng, SeedableRng};

const USERS: usize = 60;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn seconds() -> u64 {
    std::env::var("CONVERGEDB_REFRESH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 8 } else { 60 })
}

struct Shared {
    db: Db,
    stop: AtomicBool,
    /// user -> history version of its last acknowledged write.
    acked: RwLock<HashMap<String, u64>>,
    /// Items whose deletion was acknowledged, in order.
    deleted: RwLock<Vec<String>>,
    /// Unix ms just after the last deletion was acknowledged.
    last_delete_ms: AtomicU64,
    reads: AtomicU64,
    fresh: AtomicU64,
    stale: AtomicU64,
    other: AtomicU64,
    writes: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Shared {
    fn fail(&self, what: String) {
        let mut f = self.failures.lock();
        if f.len() < 20 {
            f.push(what);
        }
    }
}

fn writer(s: &Shared, parity: usize, items: &[String], seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut t = 1_000i64;
    while !s.stop.load(Ordering::Relaxed) {
        let u = 2 * rng.gen_range(0..USERS / 2) + parity;
        let user = format!("u{u}");
        let item = &items[rng.gen_range(0..items.len())];
        t += 1;
        match s
            .db
            .record_interactions(&[Interaction::new(user.clone(), item.clone(), t)])
        {
            Ok(()) => {
                // Only this thread writes this user: the version now is the write's.
                let v = s.db.history(&user).unwrap().version;
                s.acked.write().insert(user, v);
                s.writes.fetch_add(1, Ordering::Relaxed);
            }
            Err(Error::DeletedItem { .. }) => {}
            Err(e) => s.fail(format!("record_interactions: {e}")),
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..8)));
    }
}

fn reader(s: &Shared, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    while !s.stop.load(Ordering::Relaxed) {
        let user = format!("u{}", rng.gen_range(0..USERS));
        let acked = s.acked.read().get(&user).copied().unwrap_or(0);
        let deleted_before = s.deleted.read().len();
        let rec = match s.db.recommend(&user, 10) {
            Ok(r) => r,
            Err(e) => {
                s.fail(format!("recommend: {e}"));
                continue;
            }
        };
        s.reads.fetch_add(1, Ordering::Relaxed);
        let deleted = s.deleted.read();
        for it in &rec.items {
            if deleted[..deleted_before].contains(&it.key) {
                s.fail(format!("I3: {user} was served deleted item {}", it.key));
            }
        }
        drop(deleted);
        match (rec.source, rec.stale) {
            (Source::Model, false) => {
                s.fresh.fetch_add(1, Ordering::Relaxed);
                if rec.history_version < acked {
                    s.fail(format!(
                        "I4/I5: {user} served a current list of history version {} after \
                         version {acked} was acknowledged",
                        rec.history_version
                    ));
                }
            }
            (Source::Model, true) => {
                s.stale.fetch_add(1, Ordering::Relaxed);
            }
            (_, true) => s.fail(format!("{user}: a non-model answer flagged stale")),
            _ => {
                s.other.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn deleter(s: &Shared, victims: &[String]) {
    for item in victims {
        for _ in 0..10 {
            if s.stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        match s.db.delete_items(&[item.as_str()]) {
            Ok(_) => {
                s.deleted.write().push(item.clone());
                s.last_delete_ms.store(now_ms() + 1, Ordering::Relaxed);
            }
            Err(e) => s.fail(format!("delete_items: {e}")),
        }
    }
}

#[test]
fn readers_writers_and_workers_keep_the_invariants() {
    let dir = common::tempdir();
    let db = bundle::open_with_catalog(Config::new(dir.path()).refresh_workers(1));
    db.record_interactions(&bundle::synthetic_histories(USERS, 8, 3))
        .unwrap();
    bundle::attach(&db);
    db.wait_idle().unwrap();
    let keys = bundle::item_keys();
    // Writers use the first 400 items; the deleter removes popular items the lists hold.
    let writer_items: Vec<String> = keys[..400].to_vec();
    let mut victims: Vec<String> = Vec::new();
    for u in 0..USERS {
        for it in db.recommend(&format!("u{u}"), 5).unwrap().items {
            if !victims.contains(&it.key) && keys[400..].contains(&it.key) {
                victims.push(it.key);
            }
        }
    }
    let shared = Arc::new(Shared {
        db: db.clone(),
        stop: AtomicBool::new(false),
        acked: RwLock::new(HashMap::new()),
        deleted: RwLock::new(Vec::new()),
        last_delete_ms: AtomicU64::new(0),
        reads: AtomicU64::new(0),
        fresh: AtomicU64::new(0),
        stale: AtomicU64::new(0),
        other: AtomicU64::new(0),
        writes: AtomicU64::new(0),
        failures: Mutex::new(Vec::new()),
    });
    let mut threads = Vec::new();
    for parity in 0..2 {
        let (s, items) = (Arc::clone(&shared), writer_items.clone());
        threads.push(std::thread::spawn(move || {
            writer(&s, parity, &items, 10 + parity as u64)
        }));
    }
    for r in 0..2 {
        let s = Arc::clone(&shared);
        threads.push(std::thread::spawn(move || reader(&s, 20 + r)));
    }
    {
        let s = Arc::clone(&shared);
        threads.push(std::thread::spawn(move || deleter(&s, &victims)));
    }
    let started = Instant::now();
    let mut checks = 0;
    while started.elapsed() < Duration::from_secs(seconds()) {
        std::thread::sleep(Duration::from_secs(2));
        let report = db.check().unwrap();
        assert!(
            report.is_clean(),
            "check() during the run: {:?}",
            report.problems
        );
        checks += 1;
    }
    shared.stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let failures = shared.failures.lock().clone();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let stats = db.refresh_stats();
    eprintln!(
        "{} s: {} writes, {} reads ({} fresh, {} stale, {} fallback), {} deletions, {} checks; refresh: {:?}",
        seconds(),
        r(&shared.writes),
        r(&shared.reads),
        r(&shared.fresh),
        r(&shared.stale),
        r(&shared.other),
        shared.deleted.read().len(),
        checks,
        stats
    );
    assert!(r(&shared.writes) > 0 && r(&shared.reads) > 0);
    assert!(r(&shared.fresh) > 0, "no current list was ever served");
    assert!(r(&shared.stale) > 0, "no stale list was ever served");
    assert_eq!(stats.panics, 0);
    assert_eq!(stats.failures, 0, "{:?}", stats.last_error);

    db.wait_idle().unwrap();
    common::assert_clean(&db);
    let deleted = shared.deleted.read().clone();
    let last_delete = shared.last_delete_ms.load(Ordering::Relaxed);
    let mut compared = 0;
    for u in 0..USERS {
        let user = format!("u{u}");
        let rec = db.recommend(&user, 10).unwrap();
        assert_eq!(rec.source, Source::Model, "{user}");
        assert!(!rec.stale, "{user} is stale after wait_idle");
        assert_eq!(rec.history_version, db.history(&user).unwrap().version);
        assert!(rec.items.iter().all(|i| !deleted.contains(&i.key)));
        // Lists computed after the last deletion equal a generation now; older ones are kept
        // when they did not hold a deleted item (see tests/refresh.rs) and are not compared.
        if rec.stamps.as_ref().unwrap().computed_at_ms > last_delete {
            let want = db.generate(&user, 10).unwrap();
            assert_eq!(common::keys(&rec), common::keys(&want), "{user}");
            compared += 1;
        }
    }
    eprintln!("{compared} of {USERS} final lists compared with a synchronous generation");
    assert!(compared > 0);
    db.close().unwrap();
}
