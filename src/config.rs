//! Configuration: where the database lives, how durable writes are, and the input limits.

use std::path::{Path, PathBuf};

use crate::{AnnParams, Db, Error, RefreshParams, Result};

/// When a write is on disk.
///
/// See `docs/design.md` ("Durability") for what each mode promises on a process crash and on
/// power loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Writes return once committed in memory; a background thread flushes every half
    /// `flush_every_ms`, and a write that finds the last completed flush older than
    /// `flush_every_ms` flushes before it returns. So when a write returns, every write that had
    /// returned more than `flush_every_ms` before it was called is on disk: a process crash
    /// loses at most the writes acknowledged within `flush_every_ms` of the last acknowledged
    /// one (and, after writes stop, what the next background flush had not reached), never a
    /// part of one operation. See `docs/design.md`, "Durability".
    Buffered {
        /// Background flush interval in milliseconds.
        flush_every_ms: u64,
    },
    /// Every write operation flushes sled's log before it returns.
    Sync,
}

impl Default for Durability {
    fn default() -> Self {
        Durability::Buffered {
            flush_every_ms: 500,
        }
    }
}

/// Options for opening a database. Build with [`Config::new`] and the builder methods, then
/// call [`Config::open`].
///
/// ```no_run
/// use convergedb::{Config, Durability};
/// let db = Config::new("/tmp/my-db").durability(Durability::Sync).open()?;
/// # Ok::<(), convergedb::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) path: PathBuf,
    pub(crate) create_if_missing: bool,
    pub(crate) durability: Durability,
    pub(crate) cache_capacity_bytes: u64,
    pub(crate) limits: Limits,
    pub(crate) vectors: Vec<(String, usize)>,
    pub(crate) ann: AnnParams,
    pub(crate) ann_maintain: Vec<String>,
    pub(crate) ann_vector: Option<String>,
    pub(crate) refresh: RefreshParams,
    pub(crate) history_chunk: usize,
    pub(crate) accept_lost_writes: bool,
    pub(crate) cluster: Option<crate::cluster::ClusterConfig>,
}

/// Entries per frozen history chunk in a new database (`Config::history_chunk_entries`).
pub(crate) const DEFAULT_HISTORY_CHUNK: usize = 32;

/// Input limits. Every one is checked on every public entry point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub max_key_bytes: usize,
    pub max_text_bytes: usize,
    pub max_attributes: usize,
    pub max_vector_dim: usize,
    pub max_batch: usize,
    pub max_k: usize,
    pub history_limit: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: 512,
            max_text_bytes: 64 * 1024,
            max_attributes: 256,
            max_vector_dim: 16 * 1024,
            max_batch: 1_000_000,
            max_k: 10_000,
            history_limit: 10_000,
        }
    }
}

/// The smallest page cache accepted (sled 0.34 panics on a cache of 0 bytes).
pub(crate) const MIN_CACHE_CAPACITY: u64 = 1024 * 1024;

/// The largest history limit a database accepts: bounds the size of one history record.
pub(crate) const MAX_HISTORY_LIMIT: usize = 1_000_000;

impl Config {
    /// A configuration for the database in directory `path` with the defaults: created if
    /// missing, `Durability::Buffered` (500 ms), 64 MiB page cache.
    pub fn new(path: impl AsRef<Path>) -> Self {
        Config {
            path: path.as_ref().to_path_buf(),
            create_if_missing: true,
            durability: Durability::default(),
            cache_capacity_bytes: 64 * 1024 * 1024,
            limits: Limits::default(),
            vectors: Vec::new(),
            ann: AnnParams::default(),
            ann_maintain: Vec::new(),
            ann_vector: None,
            refresh: RefreshParams::default(),
            history_chunk: DEFAULT_HISTORY_CHUNK,
            accept_lost_writes: false,
            cluster: None,
        }
    }

    /// Entries per frozen chunk of a user's history (default 32), fixed when the database is
    /// created or upgraded and ignored for an existing one. An append rewrites the history's
    /// head, which holds fewer entries than one chunk, and every `n` appends write one chunk:
    /// smaller chunks make appends cheaper, larger ones make whole-history reads fewer gets.
    pub fn history_chunk_entries(mut self, n: usize) -> Self {
        self.history_chunk = n;
        self
    }

    /// Open even when acknowledged writes are missing (default: false).
    ///
    /// Every flush that acknowledges writes (a `Durability::Sync` write, [`Db::flush`]) records
    /// its commit number in `convergedb.ack`, outside the storage engine's log. When the log was
    /// damaged and recovery came back without some of those writes, `open` fails with
    /// [`Error::LostWrites`]. With `true`, such an open goes on with what was recovered, and the
    /// record is rewritten to match it (a damaged `convergedb.ack` is rewritten too). Restoring
    /// a backup is the alternative that loses nothing.
    pub fn accept_lost_writes(mut self, yes: bool) -> Self {
        self.accept_lost_writes = yes;
        self
    }

    /// Create the database when the directory does not exist or is empty (default: true).
    pub fn create_if_missing(mut self, yes: bool) -> Self {
        self.create_if_missing = yes;
        self
    }

    /// When writes reach the disk (default: `Buffered` every 500 ms).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Size of sled's page cache in bytes (default: 64 MiB; at least 1 MiB).
    pub fn cache_capacity_bytes(mut self, bytes: u64) -> Self {
        self.cache_capacity_bytes = bytes;
        self
    }

    /// Fix the dimension of the named vector up front. Without this, the first stored vector of
    /// a name fixes its dimension. A name already stored with another dimension fails `open`.
    pub fn vector(mut self, name: impl Into<String>, dim: usize) -> Self {
        self.vectors.push((name.into(), dim));
        self
    }

    /// Most records accepted in one batch call (default: 1,000,000).
    pub fn max_batch(mut self, n: usize) -> Self {
        self.limits.max_batch = n;
        self
    }

    /// Largest `k` accepted by `recommend` (default: 10,000).
    pub fn max_k(mut self, k: usize) -> Self {
        self.limits.max_k = k;
        self
    }

    /// Interactions kept per user, the most recent by timestamp (default: 10,000). Older
    /// entries are dropped from the history and from the popularity counts.
    pub fn history_limit(mut self, n: usize) -> Self {
        self.limits.history_limit = n;
        self
    }

    /// Longest item or user key in bytes (default: 512).
    pub fn max_key_bytes(mut self, n: usize) -> Self {
        self.limits.max_key_bytes = n;
        self
    }

    /// All ANN parameters at once (see [`AnnParams`] for the defaults).
    pub fn ann_params(mut self, params: AnnParams) -> Self {
        self.ann = params;
        self
    }

    /// M: HNSW links per point and layer (layer 0 keeps 2·M), 2..=256 (default 16). Larger
    /// values raise recall and memory.
    pub fn ann_max_nb_connection(mut self, m: usize) -> Self {
        self.ann.max_nb_connection = m;
        self
    }

    /// Candidates examined per insertion (default 200).
    pub fn ann_ef_construction(mut self, ef: usize) -> Self {
        self.ann.ef_construction = ef;
        self
    }

    /// Candidates examined per query, at least `k` (default 128: recall@10 >= 0.95 up to 1M x 64
    /// synthetic vectors; 96 already gives >= 0.99 at 100k, see docs/benchmarks.md).
    pub fn ann_ef_search(mut self, ef: usize) -> Self {
        self.ann.ef_search = ef;
        self
    }

    /// Rebuild an index once its tombstones (deleted or updated items) exceed this fraction of
    /// its points (default 0.25).
    pub fn ann_rebuild_tombstone_ratio(mut self, ratio: f64) -> Self {
        self.ann.rebuild_tombstone_ratio = ratio;
        self
    }

    /// Fewest history entries a user needs before `recommend` uses the ANN index (default 1).
    pub fn ann_min_history(mut self, n: usize) -> Self {
        self.ann.min_history = n;
        self
    }

    /// Keep an ANN index over vector `name` without calling `build_ann`: built on open when
    /// missing (or with the first vectors of that name), then maintained like any index.
    pub fn ann_maintain(mut self, name: impl Into<String>) -> Self {
        self.ann_maintain.push(name.into());
        self
    }

    /// The vector whose index `recommend` uses. Without it, `recommend` uses the index when
    /// exactly one exists, else the first name given to [`Config::ann_maintain`].
    pub fn ann_vector(mut self, name: impl Into<String>) -> Self {
        self.ann_vector = Some(name.into());
        self
    }

    /// All refresh settings at once (see [`RefreshParams`]).
    pub fn refresh_params(mut self, params: RefreshParams) -> Self {
        self.refresh = params;
        self
    }

    /// Background refresh workers, each owning an ONNX Runtime session (default: one per core,
    /// [`crate::default_workers`]; at most 64).
    /// 0 starts no threads: queued users are refreshed by `wait_idle` and `refresh_now` on the
    /// caller's thread.
    pub fn refresh_workers(mut self, n: usize) -> Self {
        self.refresh.workers = n;
        self
    }

    /// Most users per model batch (default 4, at most 1,024; see [`RefreshParams::max_batch`]).
    pub fn refresh_max_batch(mut self, n: usize) -> Self {
        self.refresh.max_batch = n;
        self
    }

    /// Items kept in each cached list (default 20).
    pub fn cache_k(mut self, k: usize) -> Self {
        self.refresh.cache_k = k;
        self
    }

    /// Keeps the per-user tier (histories, cached lists, the refresh queue) in a Redis
    /// Cluster instead of this directory, which still holds the catalog, semantic-ID codes,
    /// ANN indexes and the model attachment (docs/cluster.md). The cluster's history limit is
    /// this configuration's `history_limit`; its durability is `cluster.durability` (Sync: a
    /// record returns once a replica holds it). Default: none (everything local).
    pub fn cluster(mut self, cluster: crate::cluster::ClusterConfig) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Opens (or creates) the database.
    pub fn open(self) -> Result<Db> {
        Db::open(self)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let l = &self.limits;
        let bad = |what: &str| Err(Error::InvalidArgument(what.to_string()));
        if self.cache_capacity_bytes < MIN_CACHE_CAPACITY {
            return Err(Error::InvalidArgument(format!(
                "cache_capacity_bytes = {} is below the minimum of {MIN_CACHE_CAPACITY} bytes (1 MiB)",
                self.cache_capacity_bytes
            )));
        }
        if self.path.as_os_str().is_empty() {
            return bad("the database path is empty: name a directory");
        }
        if l.max_batch == 0 {
            return bad("max_batch must be at least 1");
        }
        if l.max_k == 0 {
            return bad("max_k must be at least 1");
        }
        if l.history_limit == 0 || l.history_limit > MAX_HISTORY_LIMIT {
            return Err(Error::InvalidArgument(format!(
                "history_limit must be between 1 and {MAX_HISTORY_LIMIT}"
            )));
        }
        if self.history_chunk == 0 || self.history_chunk > crate::store::MAX_CHUNK {
            return Err(Error::InvalidArgument(format!(
                "history_chunk_entries must be between 1 and {}",
                crate::store::MAX_CHUNK
            )));
        }
        if l.max_key_bytes == 0 || l.max_key_bytes > 64 * 1024 {
            return bad("max_key_bytes must be between 1 and 65536");
        }
        if let Durability::Buffered { flush_every_ms: 0 } = self.durability {
            return bad("Buffered durability needs flush_every_ms >= 1 (use Durability::Sync to flush every write)");
        }
        self.ann.validate()?;
        self.refresh.validate()?;
        for name in self.ann_maintain.iter().chain(&self.ann_vector) {
            crate::db::validate_vector_name(name)?;
        }
        for (name, dim) in &self.vectors {
            crate::db::validate_vector_name(name)?;
            if *dim == 0 || *dim > l.max_vector_dim {
                return Err(Error::InvalidArgument(format!(
                    "vector {name:?}: dimension {dim} must be between 1 and {}",
                    l.max_vector_dim
                )));
            }
        }
        Ok(())
    }
}
