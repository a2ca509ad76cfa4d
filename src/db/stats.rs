//! `stats()`: counts and settings, cheap enough to call often.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::Db;
use crate::config::Durability;
use crate::store::{keys, records::Counts, Store, TreeId, FORMAT_VERSION};
use crate::{Error, Result};

/// A snapshot of the database's size and settings. Serialises to JSON for the CLI and C API.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Live items in the catalog.
    pub items: u64,
    /// Deleted items whose ids are kept for histories.
    pub deleted_items: u64,
    /// Users with a history.
    pub users: u64,
    /// Interactions retained in histories.
    pub interactions: u64,
    /// Interactions ever recorded (retained + dropped by the history limit).
    pub interactions_recorded: u64,
    /// Bumped by every catalog write.
    pub catalog_version: u64,
    /// Fixed dimension per vector name.
    pub vector_dims: BTreeMap<String, usize>,
    /// Interned interaction kinds.
    pub kinds: Vec<String>,
    /// Bytes sled reports on disk.
    pub disk_bytes: u64,
    /// The on-disk format version.
    pub format_version: u32,
    /// The durability mode of this handle.
    pub durability: Durability,
    /// `Some(reason)` when the handle is poisoned.
    pub poisoned: Option<String>,
    /// The current tokenization (sid table), if any.
    pub sid: Option<crate::SidInfo>,
    /// The attached model: its id, the ONNX Runtime library version and the execution provider
    /// in use.
    pub model: Option<crate::ModelInfo>,
    /// The ANN indexes in memory, by vector name.
    pub ann: Vec<crate::AnnInfo>,
    /// Cached model lists stored (current or not).
    pub cached_lists: u64,
    /// The refresh pipeline: queue depth, workers, what they did, freshness lag.
    pub refresh: crate::RefreshStats,
    /// Write transactions committed by this handle since it was opened.
    pub commits: u64,
    /// Flushes this handle ran to make `Durability::Sync` writes durable (concurrent writers
    /// share one: fewer flushes than Sync writes means commits were grouped).
    pub sync_flushes: u64,
    /// `record_interactions` batches committed in a transaction led by another caller (group
    /// commit).
    pub grouped_batches: u64,
    /// Where the per-user tier lives: `None` in this directory; with `Config::cluster`, the
    /// cluster's key namespace (then `users`, `interactions`, `interactions_recorded`,
    /// `kinds`, `cached_lists` and the refresh queue counts describe this node's own local tier,
    /// which holds no users, and popularity counts what it recorded).
    pub cluster_namespace: Option<String>,
}

impl Db {
    /// Counts and settings.
    pub fn stats(&self) -> Result<Stats> {
        let counts = self.counts()?;
        let derived = self.inner.derived.read();
        Ok(Stats {
            items: counts.live_items,
            deleted_items: counts.deleted_items,
            users: counts.users,
            interactions: counts.interactions,
            interactions_recorded: counts.recorded,
            catalog_version: counts.catalog_version,
            vector_dims: derived.dims.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            kinds: derived.kinds.clone(),
            disk_bytes: self.inner.store.db.size_on_disk()?,
            format_version: FORMAT_VERSION,
            durability: self.inner.config.durability,
            poisoned: self.inner.poison.reason(),
            sid: derived.sid.as_deref().map(crate::SidInfo::of),
            model: self.model_info(),
            ann: self.ann_info(),
            cached_lists: self.inner.store.tree(TreeId::Topk).len() as u64,
            refresh: self.refresh_stats(),
            commits: self.inner.durable.commits(),
            sync_flushes: self.inner.durable.flushes.load(Ordering::Relaxed),
            grouped_batches: self.inner.group.grouped.load(Ordering::Relaxed),
            cluster_namespace: self.cluster().map(|t| t.config().namespace.clone()),
        })
    }

    /// The refresh pipeline alone (cheap: no scan).
    pub fn refresh_stats(&self) -> crate::RefreshStats {
        let r = &self.inner.refresh;
        let workers = if r.has_threads() { r.params.workers } else { 0 };
        r.counters.snapshot(workers, r.queue.counts())
    }

    /// The refresh settings this handle runs with.
    pub fn refresh_params(&self) -> crate::RefreshParams {
        self.inner.refresh.params.clone()
    }

    /// Zeroes the refresh counters of `stats().refresh` and forgets the freshness lags (to
    /// measure one period, e.g. after a warm-up). The queue itself is untouched.
    pub fn reset_refresh_stats(&self) {
        self.inner.refresh.counters.reset();
    }

    pub(super) fn counts(&self) -> Result<Counts> {
        read_counts(&self.inner.store)
    }
}

pub(super) fn read_counts(store: &Store) -> Result<Counts> {
    match store.get(TreeId::Meta, keys::META_COUNTS)? {
        Some(bytes) => Counts::decode(&bytes),
        None => Err(Error::corruption(
            "meta",
            keys::META_COUNTS,
            "missing counts record",
        )),
    }
}

impl Db {
    /// The interned interaction kinds and the most a database holds (for the importers'
    /// validation before any write).
    pub(crate) fn kinds_and_limit(&self) -> (Vec<String>, usize) {
        (
            self.inner.derived.read().kinds.clone(),
            super::interactions::MAX_KINDS,
        )
    }
}
