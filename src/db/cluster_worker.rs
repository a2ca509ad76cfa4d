//! A refresh worker on the cluster tier's queue: the loop of the in-process refresh threads of
//! a database opened with `Config::cluster`, of `convergedb worker` processes on any host, and
//! of `wait_idle`. Each step takes entries (a dead worker's first, when it is time to claim
//! them), refreshes their users with the attached model and acknowledges them; every
//! `sweep_ms` it re-notifies users whose marker has no live entry and trims the queue. Its
//! consumer name must be unique among live workers (`consumer_id`).

use std::time::{Duration, Instant};

use super::{ClusterBatch, Db};
use crate::cluster::ClusterTier;
use crate::Result;

/// A worker's state between steps.
pub struct ClusterWorker {
    name: String,
    batch: usize,
    /// Entries idle this long at another consumer are taken over (a dead worker's).
    pub claim_idle_ms: u64,
    /// How often the sweep and the trim run, and how old a marker must be to be re-notified.
    pub sweep_ms: u64,
    last_claim: Instant,
    last_sweep: Instant,
    rotation: usize,
}

/// A consumer name unique to this process: host name, process id and a random part.
pub fn consumer_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

impl ClusterWorker {
    /// A worker named `name` taking up to `batch` entries a step (claims after 10 s idle,
    /// sweeps every 30 s).
    pub fn new(name: impl Into<String>, batch: usize) -> ClusterWorker {
        let now = Instant::now();
        ClusterWorker {
            name: name.into(),
            batch: batch.max(1),
            claim_idle_ms: 10_000,
            sweep_ms: 30_000,
            last_claim: now,
            last_sweep: now,
            rotation: 0,
        }
    }

    /// This worker's consumer name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One step: `None` when the queue had nothing for this worker. Cluster errors (a
    /// failover in progress) are returned; what was taken stays pending and is claimed again.
    pub fn step(&mut self, db: &Db, tier: &ClusterTier) -> Result<Option<ClusterBatch>> {
        let now = Instant::now();
        let mut taken = Vec::new();
        if now.duration_since(self.last_claim) >= Duration::from_millis(self.claim_idle_ms / 2) {
            self.last_claim = now;
            taken = tier
                .claim_dead(&self.name, self.claim_idle_ms, self.batch)?
                .0;
        }
        if now.duration_since(self.last_sweep) >= Duration::from_millis(self.sweep_ms) {
            self.last_sweep = now;
            tier.sweep(self.sweep_ms)?;
            tier.trim()?;
        }
        if taken.is_empty() {
            taken = tier.take(&self.name, self.batch, self.rotation)?;
            self.rotation = self.rotation.wrapping_add(1);
        }
        if taken.is_empty() {
            return Ok(None);
        }
        db.refresh_cluster_batch(tier, &taken).map(Some)
    }
}

impl Db {
    /// Runs one step of `worker` on this database's own cluster tier (`Config::cluster`).
    /// Fails with `InvalidArgument` when the database has no cluster tier.
    pub fn cluster_worker_step(&self, worker: &mut ClusterWorker) -> Result<Option<ClusterBatch>> {
        let tier = self.cluster().ok_or_else(|| {
            crate::Error::InvalidArgument(
                "this database keeps its per-user tier locally: open it with Config::cluster \
                 to run a cluster worker"
                    .into(),
            )
        })?;
        worker.step(self, tier)
    }
}
