//! Refresh settings: how many workers, how large a batch, how long a cached list.

use crate::store::MAX_TOPK;
use crate::{Error, Result};

/// Settings of the refresh pipeline (see `Config::refresh_workers` and friends).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshParams {
    /// Background workers, each with its own ONNX Runtime session (default 1; 0: no background
    /// threads, lists are refreshed by `refresh_now` and `wait_idle` on the caller's thread).
    pub workers: usize,
    /// Most users in one batch through the model (default 32). Batches grow towards it as the
    /// queue grows: backpressure by batching, never by dropping work.
    pub max_batch: usize,
    /// Items kept per cached list (default 20: the default beam width). `recommend` answers
    /// from the cache with at most this many items.
    pub cache_k: usize,
}

impl Default for RefreshParams {
    fn default() -> Self {
        RefreshParams {
            workers: 1,
            max_batch: 32,
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
