//! The shipped ML-100K bundle through ONNX Runtime: parity with the Python reference
//! (`models/ml100k/test_vectors.json`), the KV cache against full re-runs, and every bundle error.
//!
//! Needs the ONNX Runtime library: `ORT_DYLIB_PATH`, or where `./scripts/setup-ort` installs it
//! (`./scripts/test` does both).

mod common;

use std::path::{Path, PathBuf};

use convergedb::import::{self, ImportOptions};
use convergedb::{Db, Error, ModelOptions, Source};
use serde_json::Value;

/// The shipped bundle, or `CONVERGEDB_TEST_BUNDLE` (to test a freshly trained one).
fn bundle() -> PathBuf {
    match std::env::var_os("CONVERGEDB_TEST_BUNDLE") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ml100k"),
    }
}

fn vectors() -> Value {
    let text = std::fs::read_to_string(bundle().join("test_vectors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A database holding the bundle's catalog and tokenization.
fn setup() -> (tempfile::TempDir, Db) {
    let (dir, db) = common::fresh();
    import::items_jsonl(
        &db,
        &bundle().join("items.jsonl"),
        &ImportOptions::default(),
    )
    .unwrap();
    let info = db
        .import_tokenization(&bundle().join("tokenization.json"))
        .unwrap();
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle().join("manifest.json")).unwrap())
            .unwrap();
    // The database computes the same fingerprint as the training pipeline.
    assert_eq!(
        info.fingerprint,
        manifest["sid"]["fingerprint"].as_str().unwrap()
    );
    (dir, db)
}

/// `CONVERGEDB_PROVIDER=cuda` (or `cuda:N`) runs these tests on the CUDA execution provider
/// (a `--features cuda` build; `./scripts/gpu-check`); default CPU.
fn provider() -> convergedb::ExecutionProvider {
    match std::env::var("CONVERGEDB_PROVIDER").ok().as_deref() {
        None | Some("") | Some("cpu") => convergedb::ExecutionProvider::Cpu,
        Some(p) => convergedb::ExecutionProvider::Cuda {
            device_id: p
                .strip_prefix("cuda")
                .and_then(|d| d.strip_prefix(':'))
                .map_or(0, |d| d.parse().expect("CONVERGEDB_PROVIDER=cuda:N")),
        },
    }
}

fn attach(db: &Db, opts: ModelOptions) {
    if let Err(e) = db.attach_model(bundle(), opts.provider(provider())) {
        panic!("attaching the shipped bundle failed: {e}\n(run ./scripts/setup-ort or set ORT_DYLIB_PATH)");
    }
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect()
}

#[test]
fn prompts_tokenize_exactly_as_in_python() {
    let (_dir, db) = setup();
    attach(&db, ModelOptions::new());
    let tv = vectors();
    let cases = tv["prompts"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let history = strs(&case["history"]);
        let p = db.prompt_for_history(&history).unwrap();
        assert_eq!(p.text, case["prompt"].as_str().unwrap());
        let want: Vec<i64> = case["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        assert_eq!(p.input_ids, want, "history {history:?}");
    }
}

/// Rust top-K equals the Python reference: same items in the same order, scores within 1e-4.
fn check_parity(db: &Db) {
    let tv = vectors();
    let cases = tv["recommendations"].as_array().unwrap();
    let min = if std::env::var_os("CONVERGEDB_TEST_BUNDLE").is_some() {
        1
    } else {
        200
    };
    assert!(
        cases.len() >= min,
        "the parity file holds {} users",
        cases.len()
    );
    let mut mismatches = Vec::new();
    let histories: Vec<Vec<&str>> = cases.iter().map(|c| strs(&c["history"])).collect();
    let answers: Vec<Vec<convergedb::ScoredItem>> = histories
        .iter()
        .zip(cases)
        .map(|(h, c)| {
            let k = c["k"].as_u64().unwrap() as usize;
            let exclude = c["exclude_history"].as_bool().unwrap();
            db.generate_for_history(h, k, exclude).unwrap()
        })
        .collect();
    for (case, got) in cases.iter().zip(&answers) {
        let want_items = strs(&case["expected"]);
        let want_scores: Vec<f64> = case["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let got_items: Vec<&str> = got.iter().map(|s| s.key.as_str()).collect();
        let close = got
            .iter()
            .zip(&want_scores)
            .all(|(g, w)| (g.score - w).abs() <= 1e-4);
        if got_items != want_items || !close {
            mismatches.push(format!(
                "user {}: rust {:?} {:?}\n python {:?} {:?}",
                case["user"],
                got_items,
                got.iter().map(|s| s.score).collect::<Vec<_>>(),
                want_items,
                want_scores
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} users differ:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}

#[test]
fn top_k_matches_the_python_reference_with_the_kv_cache() {
    let (_dir, db) = setup();
    attach(&db, ModelOptions::new().beam_width(20));
    check_parity(&db);
}

#[test]
fn the_kv_cache_and_full_reruns_agree() {
    let (_dir, db) = setup();
    let tv = vectors();
    let all = tv["recommendations"].as_array().unwrap();
    let cases = &all[..all.len().min(20)];
    let run = |kv: bool| {
        attach(&db, ModelOptions::new().kv_cache(kv));
        assert_eq!(db.model_info().unwrap().kv_cache, kv);
        cases
            .iter()
            .map(|c| {
                db.generate_for_history(&strs(&c["history"]), 10, true)
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };
    let (with, without) = (run(true), run(false));
    for (a, b) in with.iter().zip(&without) {
        assert_eq!(
            a.iter().map(|s| &s.key).collect::<Vec<_>>(),
            b.iter().map(|s| &s.key).collect::<Vec<_>>()
        );
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x.score - y.score).abs() < 1e-4,
                "{} vs {}",
                x.score,
                y.score
            );
        }
    }
}

#[test]
fn batched_generation_equals_one_user_at_a_time() {
    let (_dir, db) = setup();
    attach(&db, ModelOptions::new().max_batch(7));
    let tv = vectors();
    // Record a few test users' histories as interactions, then generate for them in one batch.
    let all = tv["recommendations"].as_array().unwrap();
    let cases = &all[..all.len().min(12)];
    let mut events = Vec::new();
    for c in cases {
        let user = c["user"].as_str().unwrap();
        for (t, item) in strs(&c["history"]).into_iter().enumerate() {
            events.push(convergedb::Interaction::new(user, item, t as i64));
        }
    }
    db.record_interactions(&events).unwrap();
    let users: Vec<&str> = cases.iter().map(|c| c["user"].as_str().unwrap()).collect();
    let batch = db.generate_batch(&users, 10).unwrap();
    for (user, rec) in users.iter().zip(&batch) {
        assert_eq!(rec.source, Source::Model);
        assert_eq!(&rec.user, user);
        let alone = db.generate(user, 10).unwrap();
        assert_eq!(common::keys(rec), common::keys(&alone));
        let history: Vec<String> = db
            .history(user)
            .unwrap()
            .entries
            .iter()
            .map(|e| e.item.clone())
            .collect();
        assert!(
            rec.items.iter().all(|i| !history.contains(&i.key)),
            "history items are excluded"
        );
        assert_eq!(rec.items.len(), 10);
    }
    let info = db.stats().unwrap().model.unwrap();
    assert!(info.ort_version.starts_with("1."), "{}", info.ort_version);
    assert_eq!(info.provider, convergedb::ExecutionProvider::Cpu);
}

#[test]
fn a_bundle_for_another_tokenization_is_refused() {
    let (_dir, db) = setup();
    // Re-tokenize the catalog with the built-in trainer: a different table, a different fingerprint.
    let mut opts = convergedb::TokenizeOptions::new("sasrec");
    opts.codes = 8;
    opts.iterations = 3;
    db.tokenize(&opts, None).unwrap();
    match db.attach_model(bundle(), ModelOptions::new()) {
        Err(Error::ForeignTokenization {
            bundle, database, ..
        }) => assert_ne!(bundle, database),
        other => panic!("expected ForeignTokenization, got {other:?}"),
    }
}

#[test]
fn generation_without_a_model_or_with_a_too_long_history_is_an_error() {
    let (_dir, db) = setup();
    assert!(matches!(db.generate("anyone", 5), Err(Error::NoModel)));
    attach(&db, ModelOptions::new());
    let max = db.model_info().unwrap().max_history;
    let tv = vectors();
    let base = strs(&tv["recommendations"][0]["history"]);
    let long: Vec<&str> = base.iter().copied().cycle().take(max + 1).collect();
    match db.generate_for_history(&long, 5, true) {
        Err(Error::HistoryTooLong { len, max: m }) => assert_eq!((len, m), (max + 1, max)),
        other => panic!("expected HistoryTooLong, got {other:?}"),
    }
    assert!(matches!(db.generate("u", 0), Err(Error::InvalidK { .. })));
}

/// Copies the bundle, lets `edit` change it, and fixes the manifest's checksums unless told not to.
fn edited_bundle(edit: impl FnOnce(&Path), fix_checksums: bool) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(bundle()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    edit(tmp.path());
    if fix_checksums {
        let path = tmp.path().join("manifest.json");
        let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let names: Vec<String> = m["sha256"].as_object().unwrap().keys().cloned().collect();
        for name in names {
            use sha2::Digest;
            let bytes = std::fs::read(tmp.path().join(&name)).unwrap();
            let hex: String = sha2::Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            m["sha256"][&name] = Value::String(hex);
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    }
    tmp
}

fn bundle_error(db: &Db, dir: &Path) -> String {
    match db.attach_model(dir, ModelOptions::new()) {
        Err(Error::InvalidBundle { reason, .. }) => reason,
        other => panic!("expected InvalidBundle, got {other:?}"),
    }
}

/// The bundle's graph files (`files.onnx`, and format 2's `files.decode`).
fn graph_files() -> Vec<String> {
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle().join("manifest.json")).unwrap())
            .unwrap();
    ["onnx", "decode"]
        .iter()
        .filter_map(|k| m["files"][k].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_graph_missing_an_input_is_refused() {
    let (_dir, db) = setup();
    // Renaming attention_mask (same length, so the protobuf stays valid) leaves a graph that
    // ONNX Runtime loads but that lacks an input the contract requires (format 2's decoding
    // graph has prefix_attention_mask, which the same edit breaks). Each graph on its own.
    let graphs = graph_files();
    assert!(!graphs.is_empty());
    for graph in graphs {
        let b = edited_bundle(
            |dir| {
                let p = dir.join(&graph);
                let bytes = std::fs::read(&p).unwrap();
                let from = b"attention_mask";
                let to = b"attention_masx";
                let mut out = bytes.clone();
                let mut i = 0;
                while i + from.len() <= out.len() {
                    if &out[i..i + from.len()] == from {
                        out[i..i + from.len()].copy_from_slice(to);
                        i += from.len();
                    } else {
                        i += 1;
                    }
                }
                assert_ne!(out, bytes);
                std::fs::write(&p, out).unwrap();
            },
            true,
        );
        let reason = bundle_error(&db, b.path());
        assert!(reason.contains("attention_mask"), "{graph}: {reason}");
    }
}

/// Format 2's manifest fields are checked: a missing decoding graph, a wrong ID-logit slice,
/// format-1 fields mixed in, and an unknown format version (whose message says how to
/// re-export).
#[test]
fn format_2_manifest_fields_are_checked() {
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle().join("manifest.json")).unwrap())
            .unwrap();
    if m["format_version"].as_u64() < Some(2) {
        eprintln!("skipped: {} is a format-1 bundle", bundle().display());
        return;
    }
    let (_dir, db) = setup();
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "files.decode",
            Box::new(|m| {
                m["files"].as_object_mut().unwrap().remove("decode");
            }),
        ),
        (
            "graph.id_logits",
            Box::new(|m| m["graph"]["id_logits"]["start"] = Value::from(0)),
        ),
        (
            "graph.decoding",
            Box::new(|m| m["graph"]["decoding"] = Value::from("per_beam")),
        ),
        (
            "belong to format_version 2",
            Box::new(|m| m["format_version"] = Value::from(1)),
        ),
        (
            "convergedb_train.reexport",
            Box::new(|m| m["format_version"] = Value::from(4)),
        ),
    ];
    for (want, edit) in cases {
        let b = edited_manifest(|m| edit(m));
        let reason = bundle_error(&db, b.path());
        assert!(reason.contains(want), "expected {want:?} in: {reason}");
    }
    // The same bundle unedited attaches and reports its format.
    attach(&db, ModelOptions::new());
    assert_eq!(
        Some(u64::from(db.model_info().unwrap().bundle_format)),
        m["format_version"].as_u64()
    );
}

/// A copy of the bundle with its manifest edited (checksums untouched: they cover the files,
/// not the manifest).
fn edited_manifest(edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
    edited_bundle(
        |dir| {
            let p = dir.join("manifest.json");
            let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            edit(&mut m);
            std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
        },
        false,
    )
}

#[test]
fn a_tokenizer_without_the_id_tokens_is_refused() {
    let (_dir, db) = setup();
    let b = edited_bundle(
        |dir| {
            let p = dir.join("tokenizer.json");
            let mut t: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            let added = t["added_tokens"].as_array_mut().unwrap();
            added.retain(|tok| !tok["content"].as_str().unwrap().starts_with("<a_"));
            std::fs::write(&p, serde_json::to_vec(&t).unwrap()).unwrap();
        },
        true,
    );
    let reason = bundle_error(&db, b.path());
    assert!(reason.contains("<a_0>"), "{reason}");
}

#[test]
fn a_changed_file_fails_its_checksum_and_a_bad_manifest_is_named() {
    let (_dir, db) = setup();
    for graph in graph_files() {
        let b = edited_bundle(
            |dir| {
                let p = dir.join(&graph);
                let mut bytes = std::fs::read(&p).unwrap();
                bytes.truncate(bytes.len() / 2);
                std::fs::write(&p, bytes).unwrap();
            },
            false,
        );
        let reason = bundle_error(&db, b.path());
        assert!(reason.contains("SHA-256"), "{graph}: {reason}");
    }

    let b = edited_bundle(
        |dir| {
            let p = dir.join("manifest.json");
            let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            m["prompt"]["serving_template"] = Value::String("nope".into());
            std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
        },
        false,
    );
    let reason = bundle_error(&db, b.path());
    assert!(reason.contains("serving_template"), "{reason}");

    let empty = tempfile::tempdir().unwrap();
    let reason = bundle_error(&db, empty.path());
    assert!(reason.contains("cannot open"), "{reason}");
}

#[test]
fn a_long_history_shows_its_most_recent_items() {
    let (_dir, db) = setup();
    attach(&db, ModelOptions::new());
    let max = db.model_info().unwrap().max_history;
    let tv = vectors();
    let items: Vec<&str> = tv["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| strs(&c["history"]))
        .take(max + 7)
        .collect();
    let events: Vec<convergedb::Interaction> = items
        .iter()
        .enumerate()
        .map(|(t, item)| convergedb::Interaction::new("long", *item, t as i64))
        .collect();
    db.record_interactions(&events).unwrap();
    let recent = &items[items.len() - max..];
    assert_eq!(
        db.prompt("long").unwrap(),
        db.prompt_for_history(recent).unwrap()
    );
    assert_ne!(
        db.prompt("long").unwrap(),
        db.prompt_for_history(&items[..max]).unwrap()
    );
}

/// The manifest is trusted no further than its checksums (issue 17): the optional files it
/// names (`items`, `test_vectors`) are verified too, a `model_id` with a control character and
/// an overlong `item_separator` are refused.
#[test]
fn optional_files_are_verified_and_manifest_strings_bounded() {
    let (_dir, db) = setup();
    for file in ["items.jsonl", "test_vectors.json"] {
        let b = edited_bundle(
            |dir| {
                let p = dir.join(file);
                let mut bytes = std::fs::read(&p).unwrap();
                bytes.extend_from_slice(b"\n");
                std::fs::write(&p, bytes).unwrap();
            },
            false,
        );
        match db.attach_model(b.path(), ModelOptions::new()) {
            Err(Error::InvalidBundle { path, reason }) => {
                assert!(reason.contains("SHA-256"), "{file}: {reason}");
                assert!(path.ends_with(file), "{file}: {}", path.display());
            }
            other => panic!("{file}: expected InvalidBundle, got {other:?}"),
        }
    }
    let manifest_edit = |edit: fn(&mut Value)| {
        edited_bundle(
            |dir| {
                let p = dir.join("manifest.json");
                let mut m: Value =
                    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
                edit(&mut m);
                std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
            },
            true,
        )
    };
    let b = manifest_edit(|m| m["model_id"] = Value::String("ml\u{0}100k".into()));
    let reason = bundle_error(&db, b.path());
    assert!(reason.contains("control character U+0000"), "{reason}");
    let b = manifest_edit(|m| {
        m["prompt"]["item_separator"] = Value::String(", ".repeat(500_000));
    });
    let reason = bundle_error(&db, b.path());
    assert!(
        reason.contains("item_separator is 1000000 bytes, over the limit of 64 bytes"),
        "{reason}"
    );
    assert!(db.model_info().is_none(), "a refused bundle was attached");
}

/// The manifest of the bundle under test, if it is format 3 (the hybrid re-rank).
fn format_3() -> Option<Value> {
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle().join("manifest.json")).unwrap())
            .unwrap();
    if m["format_version"] == 3 {
        Some(m)
    } else {
        eprintln!("skipped: {} has no re-rank (format 3)", bundle().display());
        None
    }
}

/// The parity above covers the fused lists; here: the re-rank is what changes them (the
/// beam alone, `ModelOptions::rerank(false)`, answers differently for some users and reports
/// no re-rank), and `model_info` names it.
#[test]
fn the_rerank_reorders_the_beam_and_can_be_turned_off() {
    let Some(m) = format_3() else { return };
    let (_dir, db) = setup();
    let tv = vectors();
    let all = tv["recommendations"].as_array().unwrap();
    let cases = &all[..all.len().min(30)];
    let run = |rerank: bool| {
        attach(&db, ModelOptions::new().rerank(rerank));
        let info = db.model_info().unwrap();
        cases
            .iter()
            .map(|c| {
                let k = c["k"].as_u64().unwrap() as usize;
                db.generate_for_history(&strs(&c["history"]), k, true)
                    .unwrap()
                    .into_iter()
                    .map(|s| s.key)
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .into_iter()
            .zip(std::iter::repeat(info))
            .collect::<Vec<_>>()
    };
    let fused = run(true);
    let beam = run(false);
    let info = &fused[0].1;
    assert_eq!(
        Some(info.rerank_candidates as u64),
        m["rerank"]["candidates"].as_u64()
    );
    assert_eq!(info.rerank_weight, m["rerank"]["weight"].as_f64());
    assert_eq!(beam[0].1.rerank_candidates, 0);
    let differ = fused.iter().zip(&beam).filter(|(a, b)| a.0 != b.0).count();
    assert!(
        differ > 0 || m["rerank"]["weight"] == 0.0,
        "the re-rank changed none of {} lists",
        cases.len()
    );
    for ((a, _), c) in fused.iter().zip(cases) {
        assert_eq!(a, &strs(&c["expected"]));
    }
}

/// Format 3's fields are checked: the rerank block and files.user go together and with
/// version 3, their values are bounded, the user encoder's graph must match the block, and a
/// database without the vectors the re-rank reads is refused (unless the re-rank is off).
#[test]
fn format_3_fields_and_vectors_are_checked() {
    let Some(_) = format_3() else { return };
    let (_dir, db) = setup();
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "needs both a rerank block and files.user",
            Box::new(|m| {
                m.as_object_mut().unwrap().remove("rerank");
            }),
        ),
        (
            "needs both a rerank block and files.user",
            Box::new(|m| {
                m["files"].as_object_mut().unwrap().remove("user");
                m.as_object_mut().unwrap().remove("rerank");
                m["files"]["user"] = Value::from("user.onnx");
            }),
        ),
        (
            "belongs to format_version 3",
            Box::new(|m| m["format_version"] = Value::from(2)),
        ),
        (
            "rerank.candidates 0",
            Box::new(|m| m["rerank"]["candidates"] = Value::from(0)),
        ),
        (
            "rerank.max_history 0",
            Box::new(|m| m["rerank"]["max_history"] = Value::from(0)),
        ),
        (
            "history positions",
            Box::new(|m| m["rerank"]["max_history"] = Value::from(7)),
        ),
        (
            "plain name",
            Box::new(|m| m["files"]["user"] = Value::from("../user.onnx")),
        ),
        (
            "which this database has none of",
            Box::new(|m| m["rerank"]["vector"] = Value::from("no-such-vector")),
        ),
    ];
    for (want, edit) in cases {
        let b = edited_manifest(|m| edit(m));
        let reason = bundle_error(&db, b.path());
        assert!(reason.contains(want), "expected {want:?} in: {reason}");
    }
    // Without the re-rank the vectors are not needed.
    let b = edited_manifest(|m| m["rerank"]["vector"] = Value::from("no-such-vector"));
    db.attach_model(b.path(), ModelOptions::new().rerank(false))
        .unwrap();
    assert_eq!(db.model_info().unwrap().rerank_candidates, 0);
    // A changed user encoder fails its checksum.
    let b = edited_bundle(
        |dir| {
            let p = dir.join("user.onnx");
            let mut bytes = std::fs::read(&p).unwrap();
            bytes.truncate(bytes.len() / 2);
            std::fs::write(&p, bytes).unwrap();
        },
        false,
    );
    assert!(bundle_error(&db, b.path()).contains("SHA-256"));
}

/// With a format-3 model attached, the ANN fallback queries with the model's user encoder
/// (`Db::user_vector`) instead of a mean of the history's item vectors: its answer is the
/// cosine ranking of that vector over the stored item vectors.
#[test]
fn the_ann_fallback_queries_with_the_models_user_encoder() {
    let Some(m) = format_3() else { return };
    let name = m["rerank"]["vector"].as_str().unwrap().to_string();
    let (_dir, db) = setup();
    let tv = vectors();
    let case = &tv["recommendations"][0];
    let history = strs(&case["history"]);
    let events: Vec<_> = history
        .iter()
        .enumerate()
        .map(|(t, item)| convergedb::Interaction::new("ann-user", *item, t as i64))
        .collect();
    db.record_interactions(&events).unwrap();
    db.build_ann(&name).unwrap();
    let keys = |v: Vec<Vec<convergedb::ScoredItem>>| -> Vec<String> {
        v[0].iter().map(|s| s.key.clone()).collect()
    };
    let ann = |db: &Db| db.recommend_by_source(&["ann-user"], 10, convergedb::Source::Ann, true);
    let before = keys(ann(&db).unwrap());
    assert!(matches!(
        db.user_vector("ann-user"),
        Err(convergedb::Error::NoModel)
    ));
    attach(&db, ModelOptions::new());
    let after = keys(ann(&db).unwrap());
    let user = db.user_vector("ann-user").unwrap().expect("a user vector");
    // the exact cosine ranking of the user vector over every item not in the history
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let u: Vec<f64> = user.iter().map(|&x| f64::from(x)).collect();
    let mut exact: Vec<(f64, String)> = Vec::new();
    for line in std::fs::read_to_string(bundle().join("items.jsonl"))
        .unwrap()
        .lines()
    {
        let item: Value = serde_json::from_str(line).unwrap();
        let key = item["key"].as_str().unwrap();
        let Some(v) = item["vectors"][&name].as_array() else {
            continue;
        };
        if history.contains(&key) {
            continue;
        }
        let v: Vec<f64> = v.iter().map(|x| x.as_f64().unwrap()).collect();
        let dot: f64 = u.iter().zip(&v).map(|(a, b)| a * b).sum();
        exact.push((dot / (norm(&u) * norm(&v)), key.to_string()));
    }
    exact.sort_by(|a, b| b.0.total_cmp(&a.0));
    let exact: Vec<String> = exact.into_iter().take(10).map(|(_, k)| k).collect();
    let hits = after.iter().filter(|k| exact.contains(k)).count();
    assert!(hits >= 9, "ANN {after:?} vs exact {exact:?}");
    assert_ne!(
        before, after,
        "the query did not change with the model attached"
    );
    // turning the re-rank off turns the encoder off: the mean again
    attach(&db, ModelOptions::new().rerank(false));
    assert_eq!(db.user_vector("ann-user").unwrap(), None);
    assert_eq!(keys(ann(&db).unwrap()), before);
}
