//! The `convergedb` binary with `--cluster`: an import sends the interactions to the cluster
//! (another node directory with the same catalog reads them back), `stats` names the
//! namespace, and `worker` without `--cluster` fails with one `error:` line. Needs a cluster
//! (`common/cluster.rs`).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn run(db: &Path, ns: &str, args: &[&str]) -> Output {
    let urls = common::cluster::urls().join(",");
    Command::new(env!("CARGO_BIN_EXE_convergedb"))
        .args([
            "--db",
            db.to_str().unwrap(),
            "--cluster",
            &urls,
            "--namespace",
            ns,
        ])
        .args(args)
        .output()
        .expect("run the convergedb binary")
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn an_import_through_one_node_is_read_through_another() {
    let dir = common::tempdir();
    let ns = common::cluster::namespace("cli");
    let items = dir.path().join("items.jsonl");
    std::fs::write(
        &items,
        "{\"key\":\"i1\",\"title\":\"one\"}\n{\"key\":\"i2\",\"title\":\"two\"}\n{\"key\":\"i3\",\"title\":\"three\"}\n",
    )
    .unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(
        &events,
        "{\"user\":\"alice\",\"item\":\"i1\",\"timestamp\":1,\"kind\":\"view\"}\n{\"user\":\"alice\",\"item\":\"i2\",\"timestamp\":2}\n",
    )
    .unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for node in [&a, &b] {
        ok(&run(
            node,
            &ns,
            &["import", "items", items.to_str().unwrap()],
        ));
    }
    ok(&run(
        &a,
        &ns,
        &["import", "interactions", events.to_str().unwrap()],
    ));
    let h: Value =
        serde_json::from_str(&ok(&run(&b, &ns, &["history", "alice", "--json"]))).unwrap();
    let got: Vec<(&str, Option<&str>)> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["item"].as_str().unwrap(), e["kind"].as_str()))
        .collect();
    assert_eq!(got, [("i1", Some("view")), ("i2", None)]);
    let stats: Value = serde_json::from_str(&ok(&run(&b, &ns, &["stats", "--json"]))).unwrap();
    assert_eq!(stats["cluster_namespace"], Value::from(ns.as_str()));
    let r: Value =
        serde_json::from_str(&ok(&run(&b, &ns, &["recommend", "alice", "--json"]))).unwrap();
    assert_eq!(r["items"][0]["key"], "i3", "{r}");

    let out = Command::new(env!("CARGO_BIN_EXE_convergedb"))
        .args(["--db", a.to_str().unwrap(), "worker"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: worker needs --cluster"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
