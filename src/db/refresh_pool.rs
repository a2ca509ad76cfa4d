//! The refresh threads: one dispatcher over the queue, a bounded crossbeam channel, N workers.
//!
//! Threads hold only a `Weak` to the database, upgraded for the duration of one job, so an
//! unused database still closes when its last handle is dropped (the threads then find nothing
//! to upgrade and stop). The dispatcher sizes each batch to the queue: `ceil(queued / workers)`
//! users, at most `max_batch`; while every worker is busy it blocks on the channel and the
//! queue grows, so the next batch is larger — backpressure by batching, never by dropping work.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam::channel::{bounded, Receiver, Sender};

use super::{ClusterWorker, Db, Inner};
use crate::refresh::Refresh;

type Batch = Vec<(Arc<str>, u64)>;

/// Starts the dispatcher and `workers` workers for `db` (nothing when `workers` is 0).
pub(super) fn start(db: &Db) -> std::io::Result<()> {
    let refresh = Arc::clone(&db.inner.refresh);
    let workers = refresh.params.workers;
    if workers == 0 {
        return Ok(());
    }
    if db.cluster().is_some() {
        return start_cluster(db, &refresh, workers);
    }
    let (tx, rx) = bounded::<Batch>(workers);
    for i in 0..workers {
        let (weak, shared, rx) = (Arc::downgrade(&db.inner), Arc::clone(&refresh), rx.clone());
        let t = std::thread::Builder::new()
            .name(format!("convergedb-refresh-{i}"))
            .spawn(move || worker(weak, shared, rx))?;
        refresh.add_thread(t);
    }
    let (weak, shared) = (Arc::downgrade(&db.inner), Arc::clone(&refresh));
    let t = std::thread::Builder::new()
        .name("convergedb-dispatch".into())
        .spawn(move || dispatcher(weak, shared, tx))?;
    refresh.add_thread(t);
    Ok(())
}

/// With a cluster tier: `workers` threads, each a consumer of the cluster's queue
/// (`cluster_worker.rs`) beside any worker processes on other hosts.
fn start_cluster(db: &Db, refresh: &Arc<Refresh>, workers: usize) -> std::io::Result<()> {
    let id = super::cluster_worker::consumer_id();
    for i in 0..workers {
        let (weak, shared) = (Arc::downgrade(&db.inner), Arc::clone(refresh));
        let mut worker = ClusterWorker::new(format!("{id}-{i}"), shared.params.max_batch);
        let t = std::thread::Builder::new()
            .name(format!("convergedb-cluster-refresh-{i}"))
            .spawn(move || {
                while !shared.is_shutdown() {
                    let Some(db) = upgrade(&weak) else { break };
                    if i == 0 {
                        if let Some(tier) = db.cluster() {
                            if let Err(e) = db.run_requested_cluster_sweep(tier) {
                                let failed = crate::refresh::Outcome::Failed(format!("sweep: {e}"));
                                shared.counters.outcome(&failed, None);
                            }
                        }
                    }
                    let ready = db.attached().is_ok();
                    let step = if ready {
                        db.cluster_worker_step(&mut worker)
                    } else {
                        Ok(None)
                    };
                    drop(db);
                    match step {
                        Ok(Some(_)) => {}
                        // Nothing to do, no model yet, or a cluster error (a failover): what
                        // was taken stays pending and is claimed again.
                        Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                        Err(e) => {
                            shared
                                .counters
                                .outcome(&crate::refresh::Outcome::Failed(e.to_string()), None);
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            })?;
        refresh.add_thread(t);
    }
    Ok(())
}

fn upgrade(weak: &Weak<Inner>) -> Option<Db> {
    weak.upgrade().map(|inner| Db { inner })
}

fn dispatcher(weak: Weak<Inner>, shared: Arc<Refresh>, tx: Sender<Batch>) {
    let workers = shared.params.workers.max(1);
    while !shared.is_shutdown() {
        if shared.sweep_pending() {
            let Some(db) = upgrade(&weak) else { break };
            let covered = shared.sweep_started();
            if let Err(e) = db.sweep() {
                shared.counters.outcome(
                    &crate::refresh::Outcome::Failed(format!("sweep: {e}")),
                    None,
                );
            }
            shared.sweep_finished(covered);
            continue;
        }
        let usable = match upgrade(&weak) {
            Some(db) => db.attached().is_ok(),
            None => break,
        };
        let queued = shared.queue.counts().queued;
        if !usable || queued == 0 {
            shared.queue.wait(Duration::from_millis(500), || {
                shared.is_shutdown()
                    || shared.sweep_pending()
                    || (usable && shared.queue.counts().queued > 0)
            });
            continue;
        }
        let size = queued.div_ceil(workers).clamp(1, shared.params.max_batch);
        let batch = shared.queue.take_batch(size);
        if batch.is_empty() {
            // Only users waiting out a retry delay are queued.
            shared.queue.wait(Duration::from_millis(50), || {
                shared.is_shutdown() || shared.sweep_pending()
            });
            continue;
        }
        if tx.send(batch).is_err() {
            break;
        }
    }
    // Dropping `tx` lets the workers finish what the channel holds, then stop.
}

fn worker(weak: Weak<Inner>, shared: Arc<Refresh>, rx: Receiver<Batch>) {
    while let Ok(batch) = rx.recv() {
        match upgrade(&weak) {
            Some(db) => db.run_refresh_batch(&batch),
            None => break,
        }
    }
    drop(shared);
}
