//! Goal: the `convergedb` binary imports, reports, checks and recommends, and fails cleanly:
//! a non-zero exit, one `error:` line on stderr, and no side effect. Method: run the built
//! binary (CARGO_BIN_EXE_convergedb) on a temporary database: import a small JSONL item file
//! and a CSV interaction file, parse `stats --json` and `recommend --json` with serde_json,
//! read `history` and `check`, then run the error cases and inspect exit code, stderr and the
//! file system.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::tempdir;
use serde_json::Value;

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_convergedb"))
        .args(args)
        .output()
        .expect("run the convergedb binary")
}

fn db_cli(db: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--db", db.to_str().unwrap()];
    all.extend_from_slice(args);
    cli(&all)
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Asserts a failed run: non-zero exit and exactly one stderr line, starting with "error:".
#[track_caller]
fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure, got {:?}",
        out.status
    );
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr must be one line: {stderr:?}");
    assert!(lines[0].starts_with("error:"), "{stderr:?}");
    lines[0].to_string()
}

/// A database with items i1..i4 and interactions of alice (i1, i2) and bob (i1, i3).
fn imported(dir: &Path) -> std::path::PathBuf {
    let items = dir.join("items.jsonl");
    std::fs::write(
        &items,
        r#"{"key": "i1", "title": "First", "vectors": {"emb": [1, 0]}}
{"key": "i2", "title": "Second"}
{"key": "i3", "title": "Third"}
{"key": "i4", "title": "Fourth"}
"#,
    )
    .unwrap();
    let events = dir.join("events.csv");
    std::fs::write(
        &events,
        "user,item,timestamp,kind,weight\nalice,i2,20,view,1\nalice,i1,10,buy,2.5\nbob,i1,5,,\nbob,i3,6,view,\n",
    )
    .unwrap();
    let db = dir.join("db");
    let out = db_cli(&db, &["import", "items", items.to_str().unwrap()]);
    assert!(ok(&out).contains("imported 4 items"));
    let out = db_cli(
        &db,
        &["import", "interactions", events.to_str().unwrap(), "--json"],
    );
    let report: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(report["interactions"], 4);
    db
}

#[test]
fn import_stats_check_recommend_history() {
    let dir = tempdir();
    let db = imported(dir.path());

    let stats: Value = serde_json::from_str(&ok(&db_cli(&db, &["stats", "--json"]))).unwrap();
    assert_eq!(stats["items"], 4);
    assert_eq!(stats["users"], 2);
    assert_eq!(stats["interactions"], 4);
    assert_eq!(stats["vector_dims"]["emb"], 2);
    assert_eq!(stats["kinds"], serde_json::json!(["view", "buy"]));
    assert_eq!(stats["format_version"], convergedb::FORMAT_VERSION);
    let text = ok(&db_cli(&db, &["stats"]));
    assert!(text.contains("users:         2"), "{text}");

    let out = db_cli(&db, &["check"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(ok(&out).starts_with("ok: 4 items, 2 users, 4 interactions"));
    let report: Value = serde_json::from_str(&ok(&db_cli(&db, &["check", "--json"]))).unwrap();
    assert_eq!(report["problems"], serde_json::json!([]));

    // alice saw i1 and i2: i3 (1 interaction) then i4 (0).
    let rec: Value = serde_json::from_str(&ok(&db_cli(
        &db,
        &["recommend", "alice", "-k", "2", "--json"],
    )))
    .unwrap();
    let items = rec["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["key"], "i3");
    assert_eq!(items[1]["key"], "i4");
    assert_eq!(rec["source"], "popularity");
    let text = ok(&db_cli(&db, &["recommend", "alice", "-k", "1"]));
    assert!(
        text.contains("Third"),
        "the text output shows the title: {text}"
    );

    let text = ok(&db_cli(&db, &["history", "alice"]));
    let i1 = text.find("i1").expect("i1 in the history");
    let i2 = text.find("i2").expect("i2 in the history");
    assert!(i1 < i2, "oldest first: {text}");
    assert!(text.contains("buy"), "{text}");
    let h: Value = serde_json::from_str(&ok(&db_cli(&db, &["history", "bob", "--json"]))).unwrap();
    let entries = h["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["item"], "i1");
    assert_eq!(entries[1]["kind"], "view");

    let text = ok(&db_cli(&db, &["latency", "-k", "2", "--rounds", "3"]));
    assert!(
        text.starts_with("recommend(k = 2) over 2 users x 3 rounds: p50 "),
        "{text}"
    );

    // The CLI's database opens in the library and is clean.
    let lib = common::open(&db);
    assert_eq!(lib.stats().unwrap().interactions, 4);
    let users: Vec<String> = lib.users().collect::<Result<_, _>>().unwrap();
    assert_eq!(users, ["alice", "bob"]);
    common::assert_clean(&lib);
}

#[test]
fn missing_db_flag() {
    let out = cli(&["stats"]);
    let line = failed(&out);
    assert!(line.contains("--db"), "{line}");
}

#[test]
fn read_commands_on_a_missing_directory_fail_without_creating_it() {
    let dir = tempdir();
    let missing = dir.path().join("no-db-here");
    for args in [
        vec!["stats"],
        vec!["check"],
        vec!["history", "u"],
        vec!["recommend", "u"],
    ] {
        let line = failed(&db_cli(&missing, &args));
        assert!(
            line.contains("not a convergedb database"),
            "{args:?}: {line}"
        );
        assert!(!missing.exists(), "{args:?} created the directory");
    }
    // An empty directory is not turned into a database by a read command either.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    failed(&db_cli(&empty, &["stats"]));
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

#[test]
fn bad_arguments_and_unknown_things() {
    let dir = tempdir();
    let db = imported(dir.path());
    let line = failed(&db_cli(&db, &["recommend", "u", "-k", "0"]));
    assert!(line.contains("k = 0"), "{line}");
    assert!(line.contains("between 1 and"), "{line}");

    let line = failed(&db_cli(&db, &["history", "mallory"]));
    assert!(line.contains("unknown user \"mallory\""), "{line}");

    // A bad import file names the file and the line and writes nothing.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "user,item,timestamp\ncarol,i1,1\ncarol,ghost,2\n").unwrap();
    let line = failed(&db_cli(
        &db,
        &["import", "interactions", bad.to_str().unwrap()],
    ));
    assert!(line.contains("bad.csv:3:"), "{line}");
    assert!(line.contains("ghost"), "{line}");
    let stats: Value = serde_json::from_str(&ok(&db_cli(&db, &["stats", "--json"]))).unwrap();
    assert_eq!(stats["users"], 2);
    assert_eq!(stats["interactions"], 4);
}

#[test]
fn check_exits_non_zero_on_a_damaged_database() {
    let dir = tempdir();
    let db = imported(dir.path());
    common::overwrite_raw(&db, "histories", b"bob", b"\x01\xff\xff");
    let out = db_cli(&db, &["check"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("problem:") && stdout.contains("\"bob\""),
        "{stdout}"
    );
    let line = failed(&out);
    assert!(line.contains("problem"), "{line}");
    let line = failed(&db_cli(&db, &["history", "bob"]));
    assert!(
        line.contains("corrupt") && line.contains("histories"),
        "{line}"
    );
}

/// Runs embed + tokenize + export twice on a fresh import and returns the two exports.
fn tokenize_twice(import: &[&str], dir: &Path) -> (Vec<u8>, Vec<u8>, PathBuf) {
    let mut exports = Vec::new();
    let mut last_db = PathBuf::new();
    for run in 0..2 {
        let db = dir.join(format!("db{run}"));
        ok(&db_cli(&db, import));
        let text = ok(&db_cli(&db, &["embed", "--name", "cf", "--dim", "32"]));
        assert!(
            text.starts_with("stored vector \"cf\" (dimension 32)"),
            "{text}"
        );
        let text = ok(&db_cli(
            &db,
            &[
                "tokenize",
                "--vector",
                "cf",
                "--iterations",
                "5",
                "--threads",
                if run == 0 { "1" } else { "2" },
            ],
        ));
        assert!(
            text.starts_with("sid table version 1: 4 levels x 256 codes"),
            "{text}"
        );
        let file = dir.join(format!("tok{run}.json"));
        ok(&db_cli(&db, &["sid-export", file.to_str().unwrap()]));
        exports.push(std::fs::read(&file).unwrap());
        assert_eq!(db_cli(&db, &["check"]).status.code(), Some(0));
        last_db = db;
    }
    let second = exports.pop().unwrap();
    (exports.pop().unwrap(), second, last_db)
}

#[test]
fn movielens_tokenization_from_the_cli_is_deterministic() {
    let Some(ml) = std::env::var_os("CONVERGEDB_ML100K").map(PathBuf::from) else {
        eprintln!(
            "SKIPPED movielens_tokenization_from_the_cli_is_deterministic: set CONVERGEDB_ML100K"
        );
        return;
    };
    let dir = tempdir();
    let (a, b, db) = tokenize_twice(&["import", "movielens", ml.to_str().unwrap()], dir.path());
    assert!(
        a == b,
        "two runs with the same seed (1 and 2 threads) must export identical bytes"
    );
    let stats: Value = serde_json::from_str(&ok(&db_cli(&db, &["sid-stats", "--json"]))).unwrap();
    assert_eq!(stats["items_with_codes"], 1682);
    assert_eq!(stats["items_without_codes"], 0);
    let text = ok(&db_cli(&db, &["sid", "1"]));
    assert!(
        text.starts_with("1: [") && text.contains("<a_") && text.contains("<d_"),
        "{text}"
    );
}

#[test]
fn amazon_tokenization_from_the_cli_is_deterministic() {
    let dir_data = std::env::var_os("CONVERGEDB_AMAZON_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/amazon-instruments")
        });
    if !dir_data.join("Instruments.inter.json").is_file() {
        eprintln!("SKIPPED amazon_tokenization_from_the_cli_is_deterministic: no Amazon data");
        return;
    }
    let dir = tempdir();
    let (a, b, db) = tokenize_twice(
        &[
            "import",
            "amazon",
            dir_data.to_str().unwrap(),
            "--name",
            "Instruments",
        ],
        dir.path(),
    );
    assert!(
        a == b,
        "two runs with the same seed must export identical bytes"
    );
    let stats: Value = serde_json::from_str(&ok(&db_cli(&db, &["sid-stats", "--json"]))).unwrap();
    assert_eq!(stats["items_with_codes"], 9922);
}

#[test]
fn ann_build_then_recommend_names_the_ann_source() {
    let dir = tempdir();
    let items = dir.path().join("items.jsonl");
    std::fs::write(
        &items,
        r#"{"key": "a", "vectors": {"emb": [1, 0, 0]}}
{"key": "b", "vectors": {"emb": [0.9, 0.1, 0]}}
{"key": "c", "vectors": {"emb": [0, 0, 1]}}
"#,
    )
    .unwrap();
    let events = dir.path().join("events.csv");
    std::fs::write(&events, "user,item,timestamp\nu,a,1\nv,c,2\nv,c,3\n").unwrap();
    let db = dir.path().join("db");
    ok(&db_cli(&db, &["import", "items", items.to_str().unwrap()]));
    ok(&db_cli(
        &db,
        &["import", "interactions", events.to_str().unwrap()],
    ));
    let rec: Value =
        serde_json::from_str(&ok(&db_cli(&db, &["recommend", "u", "--json"]))).unwrap();
    assert_eq!(rec["source"], "popularity");

    let text = ok(&db_cli(&db, &["ann-build", "--vector", "emb"]));
    assert!(text.contains("ANN index of \"emb\": 3 vectors"), "{text}");
    let rec: Value =
        serde_json::from_str(&ok(&db_cli(&db, &["recommend", "u", "--json"]))).unwrap();
    assert_eq!(rec["source"], "ann");
    assert_eq!(rec["items"][0]["key"], "b");
    let text = ok(&db_cli(&db, &["recommend", "u"]));
    assert!(text.contains("source Ann"), "{text}");

    let err = failed(&db_cli(&db, &["ann-build", "--vector", "nope"]));
    assert!(err.contains("no vector named \"nope\""), "{err}");
    let text = ok(&db_cli(&db, &["ann-drop", "--vector", "emb"]));
    assert!(text.contains("dropped"), "{text}");
    ok(&db_cli(&db, &["check"]));
}

/// `convergedb eval` on a hand-made case whose metrics are worked out by hand: three users,
/// their last interaction held out (the target), popularity ranked over what is stored
/// (i1: 3 interactions, i2: 2, i3: 1).
#[test]
fn eval_computes_recall_and_ndcg_by_hand() {
    let dir = tempdir();
    let items = dir.path().join("items.jsonl");
    std::fs::write(
        &items,
        "{\"key\": \"i1\"}\n{\"key\": \"i2\"}\n{\"key\": \"i3\"}\n{\"key\": \"i4\"}\n",
    )
    .unwrap();
    let events = dir.path().join("events.csv");
    std::fs::write(
        &events,
        "user,item,timestamp\na,i1,1\na,i2,2\na,i3,10\nb,i1,1\nb,i2,2\nb,i3,11\nc,i1,1\nc,i3,2\nc,i2,12\n",
    )
    .unwrap();
    let db = dir.path().join("db");
    let held = dir.path().join("held.jsonl");
    ok(&db_cli(&db, &["import", "items", items.to_str().unwrap()]));
    ok(&db_cli(
        &db,
        &[
            "import",
            "interactions",
            events.to_str().unwrap(),
            "--hold-out-last",
            "1",
            "--held-out",
            held.to_str().unwrap(),
        ],
    ));
    let out = ok(&db_cli(
        &db,
        &["eval", held.to_str().unwrap(), "-k", "2", "--json"],
    ));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["users"], 3);
    assert_eq!(report["k"], 2);
    let rows = report["rows"].as_array().unwrap();
    // no model attached, no ANN index: popularity only, history kept then excluded
    assert_eq!(rows.len(), 2, "{out}");
    let row = |excluded: bool| {
        rows.iter()
            .find(|r| r["exclude_history"] == excluded)
            .unwrap()
    };
    // Kept: every user gets [i1, i2]; a and b (target i3) miss, c (target i2) hits at rank 1:
    // recall 1/3, NDCG 1/log2(3) / 3.
    let kept = row(false);
    assert_eq!(kept["source"], "popularity");
    let close = |v: &Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-9;
    assert!(close(&kept["recall"], 1.0 / 3.0), "{kept}");
    assert!(close(&kept["ndcg"], 1.0 / 3f64.log2() / 3.0), "{kept}");
    // Excluded: a and b (seen i1, i2) get i3 first, c (seen i1, i3) gets i2 first: all hit at
    // rank 0.
    let excluded = row(true);
    assert!(close(&excluded["recall"], 1.0), "{excluded}");
    assert!(close(&excluded["ndcg"], 1.0), "{excluded}");
    // The table names both rows; a held-out file that is empty is an error.
    let table = ok(&db_cli(&db, &["eval", held.to_str().unwrap(), "-k", "2"]));
    assert!(
        table.contains("popularity") && table.contains("excluded"),
        "{table}"
    );
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let err = failed(&db_cli(&db, &["eval", empty.to_str().unwrap()]));
    assert!(err.contains("no held-out interactions"), "{err}");
    let err = failed(&db_cli(
        &db,
        &["eval", held.to_str().unwrap(), "--sources", "model"],
    ));
    assert!(err.contains("model"), "{err}");
}
