//! The `Db` facade: the only public entry point. It composes the store (truth) with the derived
//! in-memory state and owns the write path.
//!
//! Write path (every mutating call): validate the input without touching anything, take the
//! writer lock, run one sled transaction across the trees it touches, apply the derived effects, release
//! the lock, and flush when the durability is `Sync`. Writers are serialised (one at a time,
//! like LMDB and redb); readers never take the writer lock.
//!
//! Invariants owned here (see `docs/design.md`, "Invariants"): the derived state equals the
//! store after every write; a failed flush or storage error poisons the handle.

mod ann;
mod ann_check;
mod by_source;
mod catalog_log;
mod check;
mod check_values;
mod cluster_check;
mod cluster_tier;
mod cluster_worker;
mod embed;
mod flusher;
mod generate;
mod group_commit;
mod interactions;
mod items;
mod poison;
mod read;
mod refresh;
mod refresh_check;
mod refresh_pool;
mod rerank;
mod sid;
mod sid_assign;
mod stats;
mod validate;

pub use check::CheckReport;
pub use cluster_tier::ClusterBatch;
pub use cluster_worker::{consumer_id, ClusterWorker};
pub use generate::Prompt;
pub(crate) use refresh::now_ms;
pub use sid::TokenizeProgress;
pub use stats::Stats;
pub(crate) use validate::{validate_interactions, validate_items, validate_vector_name};

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::ann::AnnSlot;
use crate::config::Durability;
use crate::derived::{Derived, Effects};
use crate::refresh::Refresh;
use crate::store::{open_store, Store, TreeId, Tx, TxResult};
use crate::{Config, Error, Result};
use poison::Poison;

/// An open convergedb database.
///
/// Cheap to clone (an `Arc` inside); every clone is the same database. `Send + Sync`: share it
/// between threads freely. The files are closed when the last clone is dropped or on
/// [`Db::close`].
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Store,
    derived: RwLock<Derived>,
    writer: Mutex<()>,
    poison: Poison,
    /// The attached model bundle, if any.
    model: RwLock<Option<Arc<crate::model::Model>>>,
    /// ANN indexes by vector name (derived; replaced whole on rebuild, under the writer lock).
    ann: RwLock<HashMap<String, AnnSlot>>,
    /// The refresh queue and what its threads share (`refresh_pool.rs`).
    refresh: Arc<Refresh>,
    /// `record_interactions` batches waiting for the writer lock (`group_commit.rs`).
    group: group_commit::GroupQueue,
    /// Commit numbers and the grouped Sync flush.
    durable: group_commit::DurableGate,
    /// When the last completed flush started: the Buffered loss bound (`flusher.rs`).
    flush_clock: flusher::FlushClock,
    /// The per-user tier when it lives in a Redis Cluster (`Config::cluster`); `None`: in the
    /// local store (`cluster_tier.rs` routes every per-user call).
    cluster: Option<crate::cluster::ClusterTier>,
    /// The cluster catalog log's state on this node (`catalog_log.rs`).
    catalog_log: catalog_log::LogState,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.inner.config.path)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Opens (or creates) the database described by `config`.
    pub fn open(config: Config) -> Result<Db> {
        config.validate()?;
        // The cluster first: a failed connect leaves nothing behind in the directory.
        let cluster = match &config.cluster {
            Some(c) => {
                let mut c = c.clone();
                c.history_limit = config.limits.history_limit;
                Some(crate::cluster::ClusterTier::connect(c)?)
            }
            None => None,
        };
        let store = open_store(&config)?;
        if cluster.is_some() && !store.tree(TreeId::Histories).is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{} holds histories in its own per-user tier: with a cluster they would be \
                 ignored, not moved. Open it without a cluster, or start the cluster node from \
                 a database without interactions (import the items and tokenization, then \
                 record the interactions through the cluster)",
                config.path.display()
            )));
        }
        let derived = Derived::load(&store)?;
        let (stale, first_seq) = load_stale(&store)?;
        let refresh = Arc::new(Refresh::new(config.refresh.clone(), first_seq));
        refresh.queue.push(stale, false);
        if derived.model_id.is_some() && config.cluster.is_none() {
            // Lists a crash (or a model or tokenization change before it) left behind (the
            // cluster tier's workers sweep for lost notifications on their own).
            refresh.request_sweep();
        }
        let db = Db {
            inner: Arc::new(Inner {
                config,
                store,
                derived: RwLock::new(derived),
                writer: Mutex::new(()),
                poison: Poison::default(),
                model: RwLock::new(None),
                ann: RwLock::new(HashMap::new()),
                refresh,
                group: Default::default(),
                durable: Default::default(),
                flush_clock: flusher::FlushClock::new(),
                cluster,
                catalog_log: Default::default(),
            }),
        };
        db.declare_vectors()?;
        db.ann_open()?;
        // A cluster node applies the other nodes' catalog changes before it serves.
        db.sync_catalog()?;
        catalog_log::start(&db).map_err(|e| Error::Io {
            path: db.inner.config.path.clone(),
            source: e,
        })?;
        flusher::start(&db).map_err(|e| Error::Io {
            path: db.inner.config.path.clone(),
            source: e,
        })?;
        refresh_pool::start(&db).map_err(|e| Error::Io {
            path: db.inner.config.path.clone(),
            source: e,
        })?;
        Ok(db)
    }

    /// Opens (or creates) the database in `path` with the default configuration.
    pub fn open_path(path: impl AsRef<std::path::Path>) -> Result<Db> {
        Db::open(Config::new(path))
    }

    /// Writes everything buffered to disk (sled's log flush; see `docs/design.md` for what that
    /// promises on power loss).
    pub fn flush(&self) -> Result<()> {
        self.inner.poison.check()?;
        self.flush_store()
    }

    /// Stops the refresh workers (each finishes the batch it holds; queued users stay queued
    /// durably), flushes, and closes this handle. The files close once every clone is dropped;
    /// other clones keep working, without background refresh (`wait_idle` then refreshes on
    /// the caller's thread).
    pub fn close(self) -> Result<()> {
        self.inner.refresh.stop();
        self.flush()
    }

    /// The path of the database directory.
    pub fn path(&self) -> &std::path::Path {
        &self.inner.config.path
    }

    /// The fixed dimension of every vector name stored so far.
    pub fn vector_dims(&self) -> std::collections::HashMap<String, usize> {
        self.inner.derived.read().dims.clone()
    }

    pub(crate) fn limits(&self) -> &crate::config::Limits {
        &self.inner.config.limits
    }

    /// Flushes and records the flushed commits as acknowledged (`convergedb.ack`); a failure
    /// poisons the handle.
    fn flush_store(&self) -> Result<()> {
        if let Err(err) = self.timed_flush(|| self.inner.store.flush_acked()) {
            self.inner.poison.set(&err);
            return Err(err);
        }
        Ok(())
    }

    /// Runs one write transaction and applies its effects to the derived state.
    fn write<T>(
        &self,
        trees: &[TreeId],
        f: impl Fn(&Tx<'_>, &Derived) -> TxResult<(T, Effects)>,
    ) -> Result<T> {
        self.write_prepared(trees, || Ok(()), |tx, derived, _| f(tx, derived))
    }

    /// Like [`Db::write`], with a `prepare` step that runs under the writer lock before the
    /// transaction. Non-transactional reads (scans) belong there: inside a sled transaction they
    /// would wait for the transaction's own lock.
    fn write_prepared<P, T>(
        &self,
        trees: &[TreeId],
        prepare: impl FnOnce() -> Result<P>,
        f: impl Fn(&Tx<'_>, &Derived, &P) -> TxResult<(T, Effects)>,
    ) -> Result<T> {
        self.inner.poison.check()?;
        let (out, seq) = {
            let arrival = self.inner.durable.arrive();
            let _writer = self.inner.writer.lock();
            let prepared = prepare()?;
            let committed = self.commit_locked(trees, &prepared, f);
            drop(arrival);
            committed?
        };
        self.make_durable(seq)?;
        self.bound_buffered_loss()?;
        Ok(out)
    }

    /// Runs one transaction and applies its effects to the derived state; the caller holds the
    /// writer lock. Returns the value and the commit's number (for [`Db::make_durable`]).
    fn commit_locked<P, T>(
        &self,
        trees: &[TreeId],
        prepared: &P,
        f: impl Fn(&Tx<'_>, &Derived, &P) -> TxResult<(T, Effects)>,
    ) -> Result<(T, u64)> {
        // Only writers change `derived`, and we are the only writer: reading it inside the
        // transaction sees exactly the committed state.
        let result = {
            let derived = self.inner.derived.read();
            self.inner
                .store
                .transact(trees, |tx| f(tx, &derived, prepared))
        };
        match result {
            Ok((value, mut effects)) => {
                let seq = self.inner.durable.commit();
                let vectors = std::mem::take(&mut effects.vectors);
                let queued = std::mem::take(&mut effects.queued);
                let version = effects.catalog_version;
                let sweep = effects.model_id.is_some()
                    || effects.new_sid.is_some()
                    || effects.items.iter().any(|(_, _, live)| !live);
                self.inner.derived.write().apply(effects);
                self.inner.refresh.queue.push(queued, false);
                if sweep {
                    self.inner.refresh.request_sweep();
                }
                if !vectors.is_empty() || version.is_some() {
                    self.ann_after_write(&vectors, version);
                }
                Ok((value, seq))
            }
            Err(e) => {
                if matches!(e, Error::Storage(_)) {
                    self.inner.poison.set(&e);
                }
                Err(e)
            }
        }
    }

    /// Under `Durability::Sync`, returns once commit `seq` is on disk: concurrent writers share
    /// one flush (`group_commit.rs`). Nothing to do when Buffered.
    fn make_durable(&self, seq: u64) -> Result<()> {
        if self.inner.config.durability != Durability::Sync {
            return Ok(());
        }
        self.inner.durable.make_durable(seq, || self.flush_store())
    }

    fn declare_vectors(&self) -> Result<()> {
        let wanted = self.inner.config.vectors.clone();
        if wanted.is_empty() {
            return Ok(());
        }
        self.write(&[TreeId::Meta], |tx, _| {
            let mut effects = Effects::default();
            for (name, dim) in &wanted {
                match tx.dim(name)? {
                    Some(d) if d == *dim => {}
                    Some(d) => {
                        return Err(Error::InvalidArgument(format!(
                            "vector {name:?} is stored with dimension {d}, but the configuration asks for {dim}"
                        ))
                        .into())
                    }
                    None => {
                        tx.insert(
                            TreeId::Meta,
                            &crate::store::keys::dim(name),
                            crate::store::records::encode_dim(*dim),
                        )?;
                        effects.new_dims.push((name.clone(), *dim));
                    }
                }
            }
            Ok(((), effects))
        })
    }
}

/// Queued users with the seq of their durable record.
type Queued = Vec<(Arc<str>, u64)>;

/// The durable queue: every `stale` record as (user, seq), and the next free seq.
fn load_stale(store: &Store) -> Result<(Queued, u64)> {
    let mut out = Vec::new();
    let mut max_seq = 0;
    for entry in store.tree(TreeId::Stale).iter() {
        let (k, v) = entry?;
        let user = crate::store::keys::parse_text("stale", &k)?;
        let rec = crate::store::StaleRecord::decode(&k, &v)?;
        max_seq = max_seq.max(rec.seq);
        out.push((Arc::from(user.as_str()), rec.seq));
    }
    Ok((out, max_seq + 1))
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.refresh.signal_shutdown();
        // Best effort: an error here has nobody to report to; Buffered writes since the last
        // background flush would otherwise wait for sled's own drop.
        let _ = self.store.db.flush();
    }
}
