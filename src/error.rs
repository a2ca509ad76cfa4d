//! The one error type of the crate.
//!
//! Every variant says what went wrong in words a person can act on; the doc of each variant says
//! what the caller can do about it. Variants are grouped: bad input (the call changed nothing),
//! problems with the database files, and the poisoned state after a failed write.

use std::path::PathBuf;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in convergedb.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- bad input: the call was rejected and nothing was written ----
    /// A key (item or user) was empty. Give every item and user a non-empty key.
    #[error("empty {what} key: every {what} needs a non-empty key")]
    EmptyKey {
        /// `"item"` or `"user"`.
        what: &'static str,
    },
    /// A key or text field is longer than the configured limit.
    #[error("{what} is {len} {unit}, over the limit of {max} {unit}")]
    TooLong {
        /// Which field.
        what: String,
        /// Its length (in `unit`).
        len: usize,
        /// The configured limit (in `unit`).
        max: usize,
        /// What `len` and `max` count: `"bytes"`, or `"entries"` for the attribute list.
        unit: &'static str,
    },
    /// A vector does not have the dimension fixed for its name (by the first vector stored under
    /// that name, or by `Config::vector`). Re-embed with the right model or use another name.
    #[error("item {item:?}: vector {name:?} has dimension {got}, but this database stores {name:?} with dimension {expected}")]
    VectorDimension {
        /// The item's key.
        item: String,
        /// The vector's name.
        name: String,
        /// The dimension fixed for this name.
        expected: usize,
        /// The dimension given.
        got: usize,
    },
    /// A vector holds NaN or an infinity, or is empty.
    #[error("item {item:?}: vector {name:?} is invalid: {reason}")]
    InvalidVector {
        /// The item's key.
        item: String,
        /// The vector's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An interaction or a delete named an item the catalog does not hold. Put the item first.
    #[error("unknown item {key:?}: put the item before referring to it")]
    UnknownItem {
        /// The item's key.
        key: String,
    },
    /// An interaction or a delete named an item that is deleted. Put the item again to revive it.
    #[error("item {key:?} is deleted: put it again to use it")]
    DeletedItem {
        /// The item's key.
        key: String,
    },
    /// The user has no history in this database.
    #[error("unknown user {key:?}: no interaction has been recorded for this user")]
    UnknownUser {
        /// The user's key.
        key: String,
    },
    /// `insert_items` was given a key that already exists. Use `put_items` to replace items.
    #[error("item {key:?} already exists (insert_items never replaces; use put_items to replace)")]
    ItemExists {
        /// The item's key.
        key: String,
    },
    /// The same item key appears twice in one batch, so the batch's meaning is ambiguous.
    #[error("item {key:?} appears more than once in the same batch")]
    DuplicateInBatch {
        /// The item's key.
        key: String,
    },
    /// A batch is larger than `Config::max_batch`. Split it.
    #[error("batch of {len} records is over the limit of {max}: split it into smaller batches")]
    BatchTooLarge {
        /// Records in the batch.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// `k` must be between 1 and `Config::max_k`.
    #[error("k = {k} is out of range: ask for between 1 and {max} items")]
    InvalidK {
        /// The k asked for.
        k: usize,
        /// The configured limit.
        max: usize,
    },
    /// Any other argument that cannot be accepted (a NaN weight, a bad configuration value).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A tokenization (trained, imported or configured) is not usable: wrong levels or codes,
    /// codebook dimension different from the vector's, NaN values, an empty catalog, a file
    /// from another catalog. The message says which.
    #[error("invalid tokenization: {0}")]
    InvalidTokenization(String),
    /// No vector of this name is stored (and none is declared with `Config::vector`). Store
    /// item vectors under that name first.
    #[error("no vector named {name:?} is stored in this database")]
    UnknownVector {
        /// The vector name.
        name: String,
    },
    /// The vector has no ANN index. Build one with `Db::build_ann` (CLI: `convergedb ann-build
    /// --vector NAME`) or name it in `Config::ann_maintain`.
    #[error("vector {vector:?} has no ANN index: build one with build_ann (CLI: convergedb ann-build --vector {vector})")]
    NoAnnIndex {
        /// The vector name.
        vector: String,
    },
    /// An import file could not be read or parsed. Nothing from the failing batch was written.
    #[error("{path}:{line}: {reason}")]
    Import {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 when the problem is not tied to a line).
        line: u64,
        /// What is wrong.
        reason: String,
    },

    /// An import failed part-way: the batches before the failing one are committed.
    /// `source` is the error of the failing batch. Fix the input and re-run: re-importing the
    /// same items replaces them, but interactions of the committed batches would be recorded twice,
    /// so import the remaining records only.
    #[error("import stopped after {committed} of {total} records were committed: {source}")]
    ImportPartial {
        /// Records committed before the failure.
        committed: u64,
        /// Records in the import.
        total: u64,
        /// Why the failing batch was rejected.
        source: Box<Error>,
    },

    // ---- the database files ----
    /// Another handle (in this or another process) holds the database's file lock. Close it first.
    #[error("{path} is in use: another process (or an open handle) holds its lock")]
    InUse {
        /// The database directory.
        path: PathBuf,
    },
    /// The path exists but is not a convergedb database. Point at another directory or an empty one.
    #[error("{path} is not a convergedb database: {reason}")]
    NotADatabase {
        /// The path opened.
        path: PathBuf,
        /// Why it was not recognised.
        reason: String,
    },
    /// The database was written by a newer format version. Upgrade convergedb to open it.
    #[error("database format version {found} is newer than this build supports ({supported}): upgrade convergedb")]
    UnsupportedFormat {
        /// The format version on disk.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// Writes that were acknowledged as durable (a `Sync` write, or a flush) are missing after
    /// recovery: the storage engine's log was damaged and its recovery stopped before them.
    /// Restore a backup, or open with `Config::accept_lost_writes(true)` to go on without them.
    #[error("{path}: {missing} acknowledged commits are missing (commit {acknowledged} was acknowledged as durable, but recovery ended at commit {recovered}): the storage engine's log is damaged. Restore a backup, or accept the loss and go on with what was recovered: Config::accept_lost_writes(true), CLI --accept-lost-writes, C API convergedb_options.accept_lost_writes = true", missing = .acknowledged - .recovered)]
    LostWrites {
        /// The database directory.
        path: PathBuf,
        /// The last commit acknowledged as durable (from `convergedb.ack`).
        acknowledged: u64,
        /// The last commit the storage engine recovered.
        recovered: u64,
    },
    /// A stored record could not be decoded. The database files are damaged: restore a backup.
    #[error("corrupt record in tree {tree:?} at key {key}: {reason}")]
    Corruption {
        /// The sled tree holding the record.
        tree: &'static str,
        /// The record's key, printable (UTF-8 text quoted, else hex).
        key: String,
        /// What the decoder found.
        reason: String,
    },
    /// The storage engine (sled) reported an I/O or internal error.
    #[error("storage error: {0}")]
    Storage(#[from] sled::Error),
    /// An I/O error outside the storage engine (import files, directories).
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    // ---- the model ----
    /// The ONNX Runtime library is missing, is not ONNX Runtime, or is too old.
    #[error("ONNX Runtime library {path}: {reason}")]
    OrtLibrary {
        /// The library path tried (empty when none could be found).
        path: PathBuf,
        /// What went wrong and what to do.
        reason: String,
    },
    /// A model bundle is malformed: a missing or unreadable file, a bad manifest, a checksum
    /// mismatch, a tokenizer without the ID tokens, a graph without a required input.
    #[error("model bundle {path}: {reason}")]
    InvalidBundle {
        /// The bundle folder (or the file inside it).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The bundle was trained on another tokenization than the database's current one.
    #[error("model bundle {path} was trained on tokenization {bundle} but this database's current tokenization is {database}: import the bundle's tokenization.json (convergedb sid-import) or use a bundle trained on this database's tokenization")]
    ForeignTokenization {
        /// The bundle folder.
        path: PathBuf,
        /// The bundle's sid fingerprint.
        bundle: String,
        /// The database's current fingerprint (`none` without a tokenization).
        database: String,
    },
    /// No model is attached: call `Db::attach_model` first.
    #[error("no model is attached to this database: attach a bundle first (Db::attach_model, or --model DIR on the command line)")]
    NoModel,
    /// A history given for generation is longer than the model accepts.
    #[error("history of {len} items is longer than the model's maximum of {max}: pass the most recent {max} items")]
    HistoryTooLong {
        /// Items given.
        len: usize,
        /// The bundle's `prompt.max_history`.
        max: usize,
    },
    /// A rendered prompt does not fit the model's positions.
    #[error("prompt of {tokens} tokens does not fit the model ({max} positions, {levels} of them for the answer)")]
    PromptTooLong {
        /// Prompt tokens.
        tokens: usize,
        /// The graph's `max_positions`.
        max: usize,
        /// ID tokens generated after the prompt.
        levels: usize,
    },
    /// ONNX Runtime failed while running the model (or while creating a session).
    #[error("ONNX Runtime: {0}")]
    Inference(String),
    /// A write lost a race it retried: concurrent writers kept changing what it depended on
    /// (for `refresh_now`: the user's history). Retry the call.
    #[error("conflict: {0}")]
    Conflict(String),
    /// An ANN index could not be written (its dump files or folder). The previous index, if
    /// any, stays in use; fix the cause (disk space, permissions on `<db>/ann`) and rebuild.
    #[error("ANN index of vector {vector:?}: {reason}")]
    Ann {
        /// The vector name.
        vector: String,
        /// What failed.
        reason: String,
    },

    /// The Redis Cluster tier failed: unreachable, a failover in progress, a reply that is not
    /// what this version writes, or a durability wait that no replica acknowledged. Nothing
    /// was acknowledged; retry once the cluster reports `cluster_state:ok`.
    #[error("Redis Cluster: {0}")]
    Cluster(String),

    // ---- the handle ----
    /// A write failed part-way (for example a flush error): the handle no longer trusts its
    /// in-memory state. Close it and reopen the database.
    #[error(
        "database handle is poisoned by an earlier failure ({0}): close it and reopen the database"
    )]
    Poisoned(String),
}

impl Error {
    pub(crate) fn corruption(tree: &'static str, key: &[u8], reason: impl Into<String>) -> Self {
        Error::Corruption {
            tree,
            key: printable_key(key),
            reason: reason.into(),
        }
    }
}

/// Renders a key for an error message: quoted UTF-8 when it is text, else hex.
pub(crate) fn printable_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if !s.chars().any(char::is_control) => format!("{s:?}"),
        _ => {
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}")
        }
    }
}
