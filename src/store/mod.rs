//! The storage floor: sled trees, key layouts, record codecs and the schema header.
//!
//! This module is the single source of truth and knows nothing above it. It owns:
//! - the list of trees and the byte layout of every key and value (`keys.rs`, `records.rs`,
//!   documented in `docs/design.md`);
//! - the schema header in `meta` (magic + format version), checked on every open (`header.rs`);
//! - decoding with size limits, so corrupt bytes become `Error::Corruption`, never a panic or an
//!   unbounded allocation (`codec.rs`);
//! - one transaction across the trees it touches per logical operation (`tx.rs`).

mod ann_record;
pub(crate) mod codec;
mod commit;
mod header;
mod history_append;
mod history_chunks;
mod history_record;
pub(crate) mod keys;
mod leftovers;
mod open;
mod quiet_panic;
pub(crate) mod records;
mod stale_record;
mod topk_record;
mod tx;
mod upgrade;

pub(crate) use header::FORMAT_VERSION;

/// Validates schema-header bytes (for the decode fuzz target).
#[cfg(feature = "fuzzing")]
pub(crate) fn check_header_bytes(bytes: &[u8]) -> Result<u32> {
    header::check_header(std::path::Path::new("(fuzz)"), bytes)
}
pub(crate) use ann_record::{AnnManifest, DumpFile};
pub(crate) use history_append::{append as append_history, may_touch_chunks};
pub(crate) use history_chunks::parse_chunk_key;
pub(crate) use history_record::MAX_CHUNK;
pub(crate) use open::open_store;
pub(crate) use stale_record::{Reason, StaleRecord};
pub(crate) use topk_record::{TopkRecord, TopkView, MAX_TOPK};
pub(crate) use tx::{Tx, TxFail, TxResult};

use crate::{Error, Result};

/// Index of each tree in [`Store::trees`]; the names are the sled tree names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TreeId {
    Meta = 0,
    Items = 1,
    ItemKeys = 2,
    Vectors = 3,
    Histories = 4,
    Popular = 5,
    Sids = 6,
    SidItems = 7,
    Topk = 8,
    Stale = 9,
    HistoryChunks = 10,
}

pub(crate) const TREE_COUNT: usize = 11;

impl TreeId {
    pub(crate) const ALL: [TreeId; TREE_COUNT] = [
        TreeId::Meta,
        TreeId::Items,
        TreeId::ItemKeys,
        TreeId::Vectors,
        TreeId::Histories,
        TreeId::Popular,
        TreeId::Sids,
        TreeId::SidItems,
        TreeId::Topk,
        TreeId::Stale,
        TreeId::HistoryChunks,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            TreeId::Meta => "meta",
            TreeId::Items => "items",
            TreeId::ItemKeys => "item_keys",
            TreeId::Vectors => "vectors",
            TreeId::Histories => "histories",
            TreeId::Popular => "popular",
            TreeId::Sids => "sids",
            TreeId::SidItems => "sid_items",
            TreeId::Topk => "topk",
            TreeId::Stale => "stale",
            TreeId::HistoryChunks => "history_chunks",
        }
    }
}

/// The open sled database and its trees.
pub(crate) struct Store {
    pub(crate) db: sled::Db,
    pub(crate) trees: Vec<sled::Tree>,
    /// Entries per frozen history chunk (`meta["history_layout"]`).
    pub(crate) history_chunk: usize,
    /// The durable record of the last acknowledged commit (`commit.rs`).
    ack: commit::AckFile,
    /// The newest commit number a transaction of this handle committed.
    last_commit: std::sync::atomic::AtomicU64,
}

impl Store {
    pub(crate) fn tree(&self, id: TreeId) -> &sled::Tree {
        &self.trees[id as usize]
    }

    /// Runs `f` as one serializable transaction across `trees` (only those, plus `meta` for the
    /// commit counter: sled's cost per transaction grows with the number of trees in it). `f`
    /// may run more than once (sled retries on conflict), so it must not have side effects
    /// outside the transaction. Every transaction bumps `meta["commit"]` (`commit.rs`).
    pub(crate) fn transact<T>(
        &self,
        trees: &[TreeId],
        f: impl Fn(&Tx<'_>) -> TxResult<T>,
    ) -> Result<T> {
        use sled::transaction::{
            ConflictableTransactionError as C, TransactionError, Transactional,
            UnabortableTransactionError as U,
        };
        let mut all = trees.to_vec();
        if !all.contains(&TreeId::Meta) {
            all.push(TreeId::Meta);
        }
        let handles: Vec<&sled::Tree> = all.iter().map(|t| self.tree(*t)).collect();
        let out = handles[..].transaction(|views| {
            let tx = Tx::new(views, &all);
            f(&tx)
                .and_then(|v| Ok((v, commit::bump_commit(&tx)?)))
                .map_err(|e| match e {
                    TxFail::Sled(U::Conflict) => C::Conflict,
                    TxFail::Sled(U::Storage(inner)) => C::Storage(inner),
                    TxFail::Abort(Error::Storage(inner)) => C::Storage(inner),
                    TxFail::Abort(other) => C::Abort(other),
                })
        });
        match out {
            Ok((v, commit)) => {
                self.last_commit
                    .fetch_max(commit, std::sync::atomic::Ordering::SeqCst);
                Ok(v)
            }
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(Error::Storage(e)),
        }
    }

    /// Flushes sled's log and then records every commit made before the flush began as
    /// acknowledged (`convergedb.ack`). Every flush that acknowledges writes goes through here
    /// (or calls [`Store::record_ack`] with the commit read before its own flush).
    pub(crate) fn flush_acked(&self) -> Result<()> {
        let commit = self.last_commit();
        self.db.flush()?;
        self.record_ack(commit)
    }

    /// The newest commit number committed through this handle (read it before a flush: the
    /// flush makes at least that commit durable).
    pub(crate) fn last_commit(&self) -> u64 {
        self.last_commit.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records `commit` as acknowledged after a successful flush (fsyncs `convergedb.ack`).
    pub(crate) fn record_ack(&self, commit: u64) -> Result<()> {
        self.ack.record_ack(commit)
    }

    /// Reads one raw value outside any transaction.
    pub(crate) fn get(&self, id: TreeId, key: &[u8]) -> Result<Option<sled::IVec>> {
        Ok(self.tree(id).get(key)?)
    }
}
