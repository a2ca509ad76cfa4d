//! Criterion means for the read paths on a synthetic catalog (no data download needed):
//! popularity `recommend(k = 10)` and `history()` against a raw sled `get` of the same history
//! records, read from a byte-identical copy of the database directory.

use convergedb::{Config, Interaction, Item};
use criterion::{criterion_group, criterion_main, Criterion};

mod common;

const ITEMS: usize = 2_000;
const USERS: usize = 1_000;
const PER_USER: usize = 60;

fn setup() -> (tempfile::TempDir, convergedb::Db, sled::Tree, Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db_path = dir.path().join("db");
    {
        let db = Config::new(&db_path).open().expect("open");
        let items: Vec<Item> = (0..ITEMS)
            .map(|i| Item::new(format!("item-{i}")).title(format!("Item {i}")))
            .collect();
        db.put_items(&items).expect("items");
        let mut rng = 42u64;
        let mut events = Vec::new();
        for u in 0..USERS {
            for t in 0..PER_USER {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Skewed popularity: squaring a uniform draw favours low ids.
                let x = (rng >> 33) as f64 / (1u64 << 31) as f64;
                let item = ((x * x) * ITEMS as f64) as usize;
                events.push(Interaction::new(
                    format!("user-{u}"),
                    format!("item-{item}"),
                    t as i64,
                ));
            }
        }
        db.record_interactions(&events).expect("events");
        db.close().expect("close");
    }
    let copy = dir.path().join("raw");
    common::copy_dir(&db_path, &copy).expect("copy the database");
    let db = Config::new(&db_path).open().expect("reopen");
    let raw = sled::open(&copy)
        .expect("raw")
        .open_tree("histories")
        .expect("tree");
    let users = (0..USERS).map(|u| format!("user-{u}")).collect();
    (dir, db, raw, users)
}

fn read_paths(c: &mut Criterion) {
    let (_dir, db, raw, users) = setup();
    let mut group = c.benchmark_group("read_paths");
    let mut i = 0usize;
    group.bench_function("raw_sled_get_history_record", |b| {
        b.iter(|| {
            i = (i + 7919) % users.len();
            raw.get(users[i].as_bytes()).expect("get").map(|v| v.len())
        })
    });
    group.bench_function("history", |b| {
        b.iter(|| {
            i = (i + 7919) % users.len();
            db.history(&users[i]).expect("history").entries.len()
        })
    });
    group.bench_function("recommend_popularity_k10", |b| {
        b.iter(|| {
            i = (i + 7919) % users.len();
            db.recommend(&users[i], 10).expect("recommend").items.len()
        })
    });
    group.finish();
}

criterion_group!(benches, read_paths);
criterion_main!(benches);
