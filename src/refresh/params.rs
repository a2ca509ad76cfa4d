//! Refresh settings: how many workers, how large a batch, how long a cached list.

use crate::store::MAX_TOPK;
use crate::{Error, Result};

/// Settings of the refresh pipeline (see `Config::refresh_workers` and friends).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshParams {
    /// Background workers, each with its own ONNX Runtime session (default: one per core,
    /// [`default_workers`]; 0: no background threads, lists are refreshed by `refresh_now` and
    /// `wait_idle` on the caller's thread). Each session runs single-threaded by default
    /// (`ModelOptions::intra_threads`, 1), so workers x intra-op threads = cores: the pool never
    /// oversubscribes the machine, and two single-threaded sessions measured 1.3-1.8x the
    /// users/s of one on 2 cores (docs/benchmarks.md, issue 15).
    pub workers: usize,
    /// Most users in one batch through the model (default 4). Batches grow towards it as the
    /// queue grows: backpressure by batching, never by dropping work. On CPU, small batches
    /// refresh faster (no left-padding to the longest prompt, fewer lists discarded because
    /// the history changed meanwhile): with the shipped bundle on 2 cores, 1 and 4 gave 143 and
    /// 133 lists/s, 32 gave 70 (docs/benchmarks.md); raise it for a GPU provider.
    pub max_batch: usize,
    /// Items kept per cached list (default 20: the default beam width). `recommend` answers
    /// from the cache with at most this many items.
    pub cache_k: usize,
}

/// The default number of refresh workers: the cores this process may use
/// (`std::thread::available_parallelism`, which honours CPU affinity and cgroup quotas), at
/// most 8; 1 when it cannot be read.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

impl Default for RefreshParams {
    fn default() -> Self {
        RefreshParams {
            workers: default_workers(),
            max_batch: 4,
            cache_k: 20,
        }
    }
}

impl RefreshParams {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.workers > 64 {
            return Err(Error::InvalidArgument(format!(
                "refresh_workers is {}, at most 64",
                self.workers
            )));
        }
        if self.max_batch == 0 || self.max_batch > 1024 {
            return Err(Error::InvalidArgument(format!(
                "refresh_max_batch is {}, must be between 1 and 1024",
                self.max_batch
            )));
        }
        if self.cache_k == 0 || self.cache_k > MAX_TOPK {
            return Err(Error::InvalidArgument(format!(
                "cache_k is {}, must be between 1 and {MAX_TOPK}",
                self.cache_k
            )));
        }
        Ok(())
    }
}
