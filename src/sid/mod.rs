//! Alignment Tokenization: semantic IDs inside the database.
//!
//! Every item maps to a tuple of `levels` codes (default 4 levels x 256 codes) from cascaded
//! residual codebooks, so an LLM can name any item with `levels` vocabulary tokens.
//!
//! - `table.rs`: a tokenization version (codebooks, optional encoder, fingerprint);
//! - `train.rs`: the built-in residual k-means trainer and greedy residual assignment;
//! - `trie.rs`: the in-memory trie of live code tuples (constrained decoding reads it);
//! - `file.rs`: the tokenization file format (export/import; also LETTER `*.index.json`);
//! - `embed.rs`: behavioural item vectors sketched from interactions (a built-in source of
//!   vectors to tokenize when no trained embedding is at hand).
//!
//! Invariants owned here (checked by `Db::check`): I1 every `sids` entry names a live item and
//! `sid_items` is exactly its inverse; I2 the trie equals the tuples of `sid_items`; I7 codes are
//! stamped with the table version they were assigned under and never change within it.

pub(crate) mod embed;
pub(crate) mod file;
mod kernels;
mod table;
pub(crate) mod train;
mod trie;

pub(crate) use table::SidTable;
pub use table::{Encoder, EncoderLayer, MAX_CODES, MAX_LEVELS};
pub use train::TrainProgress;
pub(crate) use trie::Trie;

/// Parameters of the built-in tokenizer ([`crate::Db::tokenize`]).
#[derive(Clone, Debug)]
pub struct TokenizeOptions {
    /// The item vector to quantize (every live item holding it gets codes).
    pub vector: String,
    /// Code levels (the paper's u, v, x, y: 4).
    pub levels: usize,
    /// Codes per level (default 256).
    pub codes: usize,
    /// Lloyd iterations per level (default 20).
    pub iterations: usize,
    /// Seed of the k-means++ initialisation: same seed, same data, same result.
    pub seed: u64,
    /// Capacity-constrained assignment at the last level, to cut collisions (default true).
    pub balance_last_level: bool,
    /// Worker threads (default: available parallelism). The result does not depend on it.
    pub threads: usize,
}

impl TokenizeOptions {
    /// Defaults for vector `name`: 4 levels x 256 codes, 20 iterations, seed 42, balanced.
    pub fn new(vector: impl Into<String>) -> Self {
        TokenizeOptions {
            vector: vector.into(),
            levels: 4,
            codes: 256,
            iterations: 20,
            seed: 42,
            balance_last_level: true,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Describes the current tokenization ([`crate::Db::sid_info`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SidInfo {
    /// The sid-table version: bumped by every tokenize or import.
    pub version: u64,
    /// SHA-256 of the table and the item codes it was created with (`docs/model-bundle.md`).
    pub fingerprint: String,
    /// Code levels.
    pub levels: usize,
    /// Codes per level.
    pub codes: usize,
    /// The item vector the codebooks quantize, if the table has codebooks.
    pub vector: Option<String>,
    /// Dimension of that vector (the encoder's input when there is an encoder).
    pub dim: Option<usize>,
    /// Whether new items can be assigned codes (the table has codebooks).
    pub has_codebooks: bool,
    /// Whether an encoder runs before quantization.
    pub has_encoder: bool,
    /// Whether the last level avoids tuples already in use.
    pub balance_last_level: bool,
    /// Where the table came from.
    pub source: String,
}

impl SidInfo {
    pub(crate) fn of(t: &SidTable) -> SidInfo {
        SidInfo {
            version: t.version,
            fingerprint: t.fingerprint.clone(),
            levels: t.levels,
            codes: t.codes,
            vector: t.vector.clone(),
            dim: t.input_dim(),
            has_codebooks: t.codebooks.is_some(),
            has_encoder: t.encoder.is_some(),
            balance_last_level: t.balance_last_level,
            source: t.source.clone(),
        }
    }
}

/// Quality figures of the current tokenization ([`crate::Db::sid_stats`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SidStats {
    /// The table.
    pub info: SidInfo,
    /// Live items with codes.
    pub items_with_codes: u64,
    /// Live items without codes (no vector, or a table without codebooks).
    pub items_without_codes: u64,
    /// Distinct code tuples in use.
    pub distinct_tuples: u64,
    /// Share of coded items whose tuple also names another item.
    pub collision_rate: f64,
    /// Most items sharing one tuple.
    pub max_items_per_tuple: u64,
    /// Per level: share of the level's codes in use.
    pub codebook_use: Vec<f64>,
    /// Mean of ||x - quantized(x)|| / ||x|| over coded items with the vector (codebooks only).
    pub mean_relative_error: Option<f64>,
    /// Heap bytes of the in-memory trie of live IDs.
    pub trie_bytes: u64,
}
