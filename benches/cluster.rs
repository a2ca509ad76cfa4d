//! Redis Cluster tier figures (issue 16), one run on the cluster named by
//! `CONVERGEDB_REDIS_CLUSTER` (`scripts/bench-cluster` starts a 3-master loopback cluster):
//!
//! - `read`: `recommend_from_cluster` p50/p99 (one Lua round trip) vs a raw `GET` of a key of
//!   the same size in the same slot, and vs the local sled `recommend` of the same user;
//!   The same read through `Db::recommend` of a database opened with `Config::cluster` (the
//!   facade's route) is reported beside it;
//! - `workers`: lists/s with 1, 2 and 3 `convergedb worker` processes with the shipped model
//!   over the same users (the queue refilled before each run);
//! - `stub`: lists/s with 1, 2 and 3 refresh threads of one process and the deterministic test
//!   generator (about a tenth of the shipped model's cost, measured alone in the same run):
//!   the queue's own ceiling.
//!
//! Prints one JSON object per figure on stdout.

mod common;

#[path = "../tests/common/bundle.rs"]
#[allow(dead_code)]
mod bundle;

use std::process::{Command, Stdio};
use std::time::Instant;

use convergedb::cluster::{ClusterConfig, ClusterDurability, ClusterTier};
use convergedb::{Config, Db};

fn urls() -> Vec<String> {
    std::env::var("CONVERGEDB_REDIS_CLUSTER")
        .expect("CONVERGEDB_REDIS_CLUSTER (scripts/bench-cluster sets it)")
        .split(',')
        .map(str::to_string)
        .collect()
}

fn tier(ns: &str) -> ClusterTier {
    let mut c = ClusterConfig::new(urls());
    c.namespace = ns.to_string();
    c.durability = ClusterDurability::Buffered;
    ClusterTier::connect(c).unwrap()
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn model_db(dir: &std::path::Path) -> Db {
    let db = bundle::open_with_catalog(Config::new(dir).refresh_workers(0));
    bundle::attach(&db);
    db
}

fn read_bench(users: usize) {
    let dir = tempfile::tempdir().unwrap();
    let db = model_db(dir.path());
    let ns = format!("bench{}-read", std::process::id());
    let t = tier(&ns);
    let events = bundle::synthetic_histories(users, 20, 5);
    db.record_to_cluster(&t, &events).unwrap();
    db.record_interactions(&events).unwrap();
    loop {
        let taken = t.take("bench", 32, 0).unwrap();
        if taken.is_empty() {
            break;
        }
        db.refresh_cluster_batch(&t, &taken).unwrap();
    }
    db.wait_idle().unwrap();
    // A raw key of the list's size in u0's slot.
    let client = redis::cluster::ClusterClient::new(urls()).unwrap();
    let mut raw = client.get_connection().unwrap();
    let list_len = t.read("u0", 1).unwrap().list.map_or(0, |l| l.0.len());
    let names: Vec<String> = (0..users).map(|u| format!("u{u}")).collect();
    for u in &names {
        let key = format!("{{{ns}:u:{u}}}:raw");
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(vec![7u8; list_len])
            .query(&mut raw)
            .unwrap();
    }
    // The facade's route: a node opened with the cluster tier, same catalog and model.
    let node_dir = tempfile::tempdir().unwrap();
    let mut nc = ClusterConfig::new(urls());
    nc.namespace = ns.clone();
    nc.durability = ClusterDurability::Buffered;
    let node =
        bundle::open_with_catalog(Config::new(node_dir.path()).refresh_workers(0).cluster(nc));
    bundle::attach(&node);
    let (mut cluster, mut get, mut local) = (Vec::new(), Vec::new(), Vec::new());
    let mut facade = Vec::new();
    for _round in 0..5 {
        for u in &names {
            let s = Instant::now();
            let r = db.recommend_from_cluster(&t, u, 10).unwrap();
            cluster.push(s.elapsed().as_secs_f64() * 1e6);
            assert!(!r.stale);
            let s = Instant::now();
            let r = node.recommend(u, 10).unwrap();
            facade.push(s.elapsed().as_secs_f64() * 1e6);
            assert!(!r.stale);
            let key = format!("{{{ns}:u:{u}}}:raw");
            let s = Instant::now();
            let v: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut raw).unwrap();
            get.push(s.elapsed().as_secs_f64() * 1e6);
            assert_eq!(v.len(), list_len);
            let s = Instant::now();
            let _ = db.recommend(u, 10).unwrap();
            local.push(s.elapsed().as_secs_f64() * 1e6);
        }
    }
    let (c50, c99) = (pct(cluster.clone(), 0.5), pct(cluster, 0.99));
    let (g50, g99) = (pct(get.clone(), 0.5), pct(get, 0.99));
    let (l50, l99) = (pct(local.clone(), 0.5), pct(local, 0.99));
    let (f50, f99) = (pct(facade.clone(), 0.5), pct(facade, 0.99));
    println!(
        "{}",
        serde_json::json!({"figure": "read", "users": users, "list_bytes": list_len,
            "cluster_recommend_us": {"p50": c50, "p99": c99},
            "raw_get_us": {"p50": g50, "p99": g99},
            "local_recommend_us": {"p50": l50, "p99": l99},
            "facade_cluster_recommend_us": {"p50": f50, "p99": f99},
            "cluster_over_get_p50": c50 / g50, "cluster_over_get_p99": c99 / g99})
    );
}

fn workers_bench(users: usize, counts: &[usize]) {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = model_db(dir.path());
        db.close().unwrap();
    }
    let ns = format!("bench{}-workers", std::process::id());
    let t = tier(&ns);
    // Each worker process needs its own node-local database (sled allows one process).
    let copies: Vec<tempfile::TempDir> = (0..counts.iter().copied().max().unwrap_or(1))
        .map(|_| {
            let c = tempfile::tempdir().unwrap();
            common::copy_dir(dir.path(), c.path()).unwrap();
            c
        })
        .collect();
    let seeder = Db::open(Config::new(dir.path()).refresh_workers(0)).unwrap();
    let events = bundle::synthetic_histories(users, 20, 11);
    for &n in counts {
        // Re-record one interaction per user: every user pending again.
        seeder.record_to_cluster(&t, &events).unwrap();
        let _ = t.trim();
        let started = Instant::now();
        let procs: Vec<_> = (0..n)
            .map(|i| {
                Command::new(env!("CARGO_BIN_EXE_convergedb"))
                    .args(["--db", copies[i].path().to_str().unwrap(), "worker"])
                    .args(["--cluster", &urls().join(","), "--namespace", &ns])
                    .args(["--name", &format!("w{i}"), "--exit-when-idle", "--json"])
                    .arg("--model")
                    .arg(bundle::bundle())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut written = 0u64;
        let mut busy: f64 = 0.0;
        for p in procs {
            let out = p.wait_with_output().unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            written += v["written"].as_u64().unwrap_or(0);
            busy = busy.max(v["busy_seconds"].as_f64().unwrap_or(0.0));
        }
        let wall = started.elapsed().as_secs_f64() - 1.0; // each waits 1 s idle before exiting
        println!(
            "{}",
            serde_json::json!({"figure": "workers", "processes": n, "users": users,
                "written": written, "busy_seconds": busy, "wall_seconds": wall,
                "lists_per_s": written as f64 / busy.max(1e-9),
                "cores": std::thread::available_parallelism().map_or(1, |c| c.get())})
        );
    }
}

fn stub_bench(users: usize, counts: &[usize]) {
    let dir = tempfile::tempdir().unwrap();
    let ns = format!("bench{}-stub", std::process::id());
    let mut c = ClusterConfig::new(urls());
    c.namespace = ns;
    c.durability = ClusterDurability::Buffered;
    let db = bundle::open_with_catalog(Config::new(dir.path()).refresh_workers(0).cluster(c));
    db.attach_test_generator("stub").unwrap();
    let events = bundle::synthetic_histories(users, 20, 13);
    // The stub's own cost: generations of the same users on this thread, no cluster write.
    let probe: Vec<String> = (0..200.min(users)).map(|u| format!("u{u}")).collect();
    db.record_interactions(&events).unwrap();
    let s = Instant::now();
    for u in &probe {
        db.generate(u, 10).unwrap();
    }
    let stub_ms = s.elapsed().as_secs_f64() * 1e3 / probe.len() as f64;
    db.wait_idle().unwrap();
    for &n in counts {
        db.record_interactions(&events).unwrap(); // every user pending again
        let before = db.refresh_stats().lists_written;
        let started = Instant::now();
        std::thread::scope(|scope| {
            for i in 0..n {
                let db = &db;
                scope.spawn(move || {
                    let mut w = convergedb::ClusterWorker::new(format!("stub-{n}-{i}"), 16);
                    while db.cluster_worker_step(&mut w).unwrap().is_some() {}
                });
            }
        });
        let secs = started.elapsed().as_secs_f64();
        let written = db.refresh_stats().lists_written - before;
        println!(
            "{}",
            serde_json::json!({"figure": "stub", "threads": n, "users": users, "written": written,
                "seconds": secs, "lists_per_s": written as f64 / secs,
                "stub_generate_ms": stub_ms,
                "cores": std::thread::available_parallelism().map_or(1, |c| c.get())})
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let mode = args.first().map_or("all", String::as_str);
    if matches!(mode, "all" | "read") {
        read_bench(500);
    }
    if matches!(mode, "all" | "workers") {
        workers_bench(1500, &[1, 2, 3]);
    }
    if matches!(mode, "all" | "stub") {
        stub_bench(3000, &[1, 2, 3]);
    }
}
