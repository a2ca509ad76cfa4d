//! convergedb: an embedded database for LLM-based generative recommendation.
//!
//! It follows "Semantic Convergence" (Li et al., AAAI 2025): a durable catalog of items with
//! semantic-ID codes, user histories, pre-cached per-user top-K lists refreshed by an aligned LLM,
//! an ANN fallback for cold users, and popularity for users without history. This crate is the
//! foundation: the sled store, the catalog, histories and popularity recommendations.
//!
//! ```
//! use convergedb::{Config, Interaction, Item};
//! # let dir = tempfile::tempdir()?;
//! let db = Config::new(dir.path()).open()?;
//! db.put_items(&[Item::new("i1").title("Toy Story"), Item::new("i2").title("Heat")])?;
//! db.record_interactions(&[Interaction::new("alice", "i1", 100)])?;
//! let rec = db.recommend("alice", 10)?;
//! assert_eq!(rec.items[0].key, "i2"); // alice already saw i1
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod ann;
pub mod cluster;
mod config;
mod db;
mod derived;
mod error;
pub mod eval;
mod ffi;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod import;
mod interaction;
mod item;
pub mod model;
mod recommendation;
mod refresh;
mod sid;
mod store;

pub use ann::{AnnInfo, AnnOrigin, AnnParams};
pub use config::{Config, Durability};
pub use db::{
    consumer_id, CheckReport, ClusterBatch, ClusterWorker, Db, Prompt, Stats, TokenizeProgress,
};
pub use error::{Error, Result};
pub use interaction::{History, HistoryEntry, Interaction};
pub use item::Item;
pub use model::{ExecutionProvider, ModelInfo, ModelOptions};
pub use recommendation::{ListStamps, Recommendation, ScoredItem, Source};
pub use refresh::{default_workers, LagSummary, RefreshParams, RefreshStats};
pub use sid::{
    Encoder, EncoderLayer, SidInfo, SidStats, TokenizeOptions, TrainProgress, MAX_CODES, MAX_LEVELS,
};

/// The on-disk format version this build writes (and the newest it reads).
pub const FORMAT_VERSION: u32 = store::FORMAT_VERSION;

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    #[test]
    fn db_is_send_sync_clone() {
        assert_send_sync::<crate::Db>();
    }
}
