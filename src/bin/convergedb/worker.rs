//! `convergedb worker`: a refresh-worker process for users whose per-user tier lives in a
//! Redis Cluster. It takes queue entries (its consumer name must be unique among live
//! workers), computes each list with this node's catalog and model, and compare-and-swaps it
//! into the cluster; it also claims dead workers' entries, sweeps for lost notifications and
//! trims the queue. Any number of these run on any number of hosts.

use std::path::Path;
use std::time::{Duration, Instant};

use convergedb::cluster::{ClusterConfig, ClusterDurability};
use convergedb::{ClusterBatch, ClusterWorker, Db, ModelOptions};

pub(crate) struct WorkerArgs<'a> {
    pub model: Option<&'a Path>,
    pub name: &'a str,
    pub batch: usize,
    pub claim_idle_ms: u64,
    pub sweep_ms: u64,
    pub for_s: Option<f64>,
    pub exit_when_idle: bool,
    pub idle_s: f64,
    pub json: bool,
}

/// The cluster configuration of `--cluster URLS --namespace NS`; `sync`: records wait for a
/// replica (a worker only writes derived state, so it runs Buffered).
pub(crate) fn cluster_config(urls: &str, namespace: &str, sync: bool) -> ClusterConfig {
    let mut config = ClusterConfig::new(urls.split(',').map(str::trim).filter(|u| !u.is_empty()));
    config.namespace = namespace.to_string();
    config.durability = if sync {
        ClusterDurability::Sync
    } else {
        ClusterDurability::Buffered
    };
    config
}

pub(crate) fn worker(db: &Db, args: WorkerArgs<'_>) -> Result<(), Box<dyn std::error::Error>> {
    if !(args.idle_s >= 0.0 && args.idle_s.is_finite()) {
        return Err(format!("--idle-s {} must be a number of seconds >= 0", args.idle_s).into());
    }
    if args.batch == 0 || args.batch > 4096 {
        return Err(format!("--batch {} must be in 1..=4096", args.batch).into());
    }
    if let Some(model) = args.model {
        db.attach_model(model, ModelOptions::new())?;
    }
    let mut worker = ClusterWorker::new(args.name, args.batch);
    worker.claim_idle_ms = args.claim_idle_ms;
    worker.sweep_ms = args.sweep_ms;
    let started = Instant::now();
    let deadline = args
        .for_s
        .map(|s| started + Duration::from_secs_f64(s.max(0.0)));
    let mut total = ClusterBatch::default();
    let mut idle_since = None::<Instant>;
    let mut reported = started;
    let mut errors = 0u64;
    loop {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        // A cluster error (a failover in progress, a node restarting) is reported and retried:
        // what this worker took stays pending and is claimed again if it never comes back.
        let b = match db.cluster_worker_step(&mut worker) {
            Ok(Some(b)) => b,
            Ok(None) => {
                let since = *idle_since.get_or_insert(now);
                if args.exit_when_idle
                    && now.duration_since(since) >= Duration::from_secs_f64(args.idle_s)
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e @ (convergedb::Error::Cluster(_) | convergedb::Error::Corruption { .. })) => {
                errors += 1;
                eprintln!("{}: {e} (retrying in 500 ms)", args.name);
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        idle_since = None;
        total.add(&b);
        if !args.json && now.duration_since(reported) >= Duration::from_secs(5) {
            eprintln!(
                "{}: {} lists written, {} conflicts, {} skipped, {} failed",
                args.name, total.written, total.conflicts, total.skipped, total.failed
            );
            reported = now;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let busy = match idle_since {
        Some(since) if args.exit_when_idle => since.duration_since(started).as_secs_f64(),
        _ => secs,
    };
    let rate = total.written as f64 / busy.max(1e-9);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "worker": args.name, "written": total.written, "conflicts": total.conflicts,
                "skipped": total.skipped, "failed": total.failed, "seconds": secs,
                "busy_seconds": busy, "lists_per_s": rate, "cluster_errors": errors,
            })
        );
    } else {
        println!(
            "{}: {} lists written ({rate:.1}/s over {busy:.1} s busy), {} conflicts, {} skipped, {} failed, {errors} cluster errors",
            args.name, total.written, total.conflicts, total.skipped, total.failed
        );
    }
    Ok(())
}
