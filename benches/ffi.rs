//! The C API's cost over the Rust API, in one process: `convergedb_recommend` + free, called
//! through the exported C symbols, against `Db::recommend` on a byte-identical copy of the same
//! database (2,000 items, 1,000 users x 50 interactions, k = 10). The C programs in
//! bindings/c/bench measure the same call from gcc-compiled code.

use std::ffi::{c_char, c_void, CString};

mod common;

use convergedb::{Config, Interaction, Item};
use criterion::{criterion_group, criterion_main, Criterion};

extern "C" {
    fn convergedb_db_open(path: *const c_char, opts: *const c_void, out: *mut *mut c_void) -> i32;
    fn convergedb_recommend(
        db: *const c_void,
        user: *const c_char,
        k: usize,
        out: *mut *mut c_void,
    ) -> i32;
    fn convergedb_recommendation_free(rec: *mut c_void);
    fn convergedb_db_free(db: *mut c_void);
}

fn ffi(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("rust"), dir.path().join("c"));
    {
        let db = Config::new(&a).open().expect("open");
        let items: Vec<Item> = (0..2_000).map(|i| Item::new(format!("item-{i}"))).collect();
        db.put_items(&items).expect("items");
        let events: Vec<Interaction> = (0..50_000usize)
            .map(|n| {
                Interaction::new(
                    format!("user-{}", n % 1_000),
                    format!("item-{}", (n * n + 7 * n) % 2_000),
                    n as i64,
                )
            })
            .collect();
        db.record_interactions(&events).expect("events");
        db.close().expect("close");
    }
    common::copy_dir(&a, &b).expect("copy the database");
    let rust = Config::new(&a).open().expect("open rust copy");
    let path = CString::new(b.to_str().expect("utf-8 path")).expect("path");
    let mut handle: *mut c_void = std::ptr::null_mut();
    // SAFETY: a NUL-terminated path, NULL options (defaults), a writable out-pointer.
    let status = unsafe { convergedb_db_open(path.as_ptr(), std::ptr::null(), &mut handle) };
    assert_eq!(status, 0, "convergedb_db_open");
    let users: Vec<String> = (0..1_000).map(|u| format!("user-{u}")).collect();
    let c_users: Vec<CString> = users
        .iter()
        .map(|u| CString::new(u.as_str()).expect("user"))
        .collect();

    let mut group = c.benchmark_group("ffi");
    let mut i = 0usize;
    group.bench_function("rust_recommend_k10", |bench| {
        bench.iter(|| {
            i = (i + 7919) % users.len();
            rust.recommend(&users[i], 10)
                .expect("recommend")
                .items
                .len()
        })
    });
    group.bench_function("c_api_recommend_k10_and_free", |bench| {
        bench.iter(|| {
            i = (i + 7919) % users.len();
            let mut rec: *mut c_void = std::ptr::null_mut();
            // SAFETY: a live handle, a NUL-terminated user key, a writable out-pointer; the
            // result is freed once below.
            let status = unsafe { convergedb_recommend(handle, c_users[i].as_ptr(), 10, &mut rec) };
            // SAFETY: `rec` came from convergedb_recommend (or is NULL, a no-op).
            unsafe { convergedb_recommendation_free(rec) };
            status
        })
    });
    group.finish();
    // SAFETY: the handle came from convergedb_db_open and no call is in flight.
    unsafe { convergedb_db_free(handle) };
}

criterion_group!(benches, ffi);
criterion_main!(benches);
