//! Goal: one-shot CLI commands have no hidden side effects (issue 17, class 7): `generate`
//! answers for its user and refreshes no other user's cached list in the background before it
//! exits. Needs the ONNX Runtime library (`ORT_DYLIB_PATH`, set by `./scripts/test`); without
//! it the test prints `SKIPPED` and passes.

mod common;

use std::process::Command;

use common::bundle;
use convergedb::Config;

#[test]
fn generate_refreshes_no_other_users_list() {
    let Some(ort) = std::env::var_os("ORT_DYLIB_PATH") else {
        println!("SKIPPED generate_refreshes_no_other_users_list: ORT_DYLIB_PATH is not set");
        return;
    };
    let dir = common::tempdir();
    let db = bundle::open_with_catalog(Config::new(dir.path()).refresh_workers(0));
    db.record_interactions(&bundle::synthetic_histories(6, 5, 17))
        .unwrap();
    assert_eq!(db.stats().unwrap().cached_lists, 0);
    db.close().unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_convergedb"))
        .arg("--db")
        .arg(dir.path())
        .args(["generate", "u0", "--json", "-k", "5", "--model"])
        .arg(bundle::bundle())
        .arg("--ort-library")
        .arg(&ort)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!answer.is_null());

    let db = Config::new(dir.path()).refresh_workers(0).open().unwrap();
    assert_eq!(
        db.stats().unwrap().cached_lists,
        0,
        "generate refreshed other users' cached lists before it exited"
    );
    common::assert_clean(&db);
}
