//! Criterion means for single-record writes with `Durability::Buffered`: one interaction per
//! `record_interactions` call (the streaming update path) and one item per `put_items` call,
//! against a raw sled `insert` of a value of the same size as the history record it rewrites.

use convergedb::{Config, Interaction, Item};
use criterion::{criterion_group, criterion_main, Criterion};

const ITEMS: usize = 2_000;
const USERS: usize = 1_000;

fn write_paths(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Config::new(dir.path().join("db")).open().expect("open");
    let items: Vec<Item> = (0..ITEMS).map(|i| Item::new(format!("item-{i}"))).collect();
    db.put_items(&items).expect("items");
    let seed: Vec<Interaction> = (0..USERS * 50)
        .map(|n| {
            Interaction::new(
                format!("user-{}", n % USERS),
                format!("item-{}", n * 7 % ITEMS),
                n as i64,
            )
        })
        .collect();
    db.record_interactions(&seed).expect("seed");
    let raw = sled::open(dir.path().join("raw"))
        .expect("raw")
        .open_tree("t")
        .expect("tree");
    let value = vec![7u8; 21 + 24 * 50];

    let mut group = c.benchmark_group("write_paths");
    let mut n = 0usize;
    group.bench_function("raw_sled_insert_history_sized", |b| {
        b.iter(|| {
            n += 1;
            raw.insert(format!("user-{}", n % USERS), value.clone())
                .expect("insert")
        })
    });
    let mut t = 1_000_000i64;
    group.bench_function("record_one_interaction", |b| {
        b.iter(|| {
            t += 1;
            let user = format!("user-{}", t as usize % USERS);
            let item = format!("item-{}", t as usize * 13 % ITEMS);
            db.record_interactions(&[Interaction::new(user, item, t)])
                .expect("record")
        })
    });
    group.bench_function("put_one_item", |b| {
        b.iter(|| {
            n += 1;
            db.put_items(&[Item::new(format!("item-{}", n % ITEMS)).title("replaced")])
                .expect("put")
        })
    });
    group.finish();
}

criterion_group!(benches, write_paths);
criterion_main!(benches);
