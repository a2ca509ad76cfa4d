//! `meta["ann/<vector name>"]`: the manifest of an ANN index dump, version 1.
//!
//! ```text
//! [1][bincode AnnManifest]   (limit 64 KiB)
//! ```
//! The manifest is the atomic switch between dump generations: the files of a generation are
//! written and synced first, then the manifest naming them is committed; a dump is loaded only
//! when every file's length and SHA-256 match the manifest.

use bincode::{Decode, Encode};

use super::codec;
use crate::Result;

pub(crate) const ANN_MANIFEST_V1: u8 = 1;
const ANN_MANIFEST_LIMIT: usize = 64 << 10;

/// One file of a dump: `<basename><suffix>` in `<db>/ann/`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub(crate) struct DumpFile {
    pub suffix: String,
    pub len: u64,
    pub sha256: [u8; 32],
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub(crate) struct AnnManifest {
    /// The indexed vector name.
    pub vector: String,
    /// Its dimension when the dump was written.
    pub dim: u32,
    /// Bumped by every dump; names the files.
    pub generation: u64,
    /// File name stem of this generation's files.
    pub basename: String,
    /// The catalog version the dump reflects.
    pub catalog_version: u64,
    /// HNSW parameters the graph was built with.
    pub max_nb_connection: u32,
    pub ef_construction: u32,
    /// Points in the graph (live + tombstones).
    pub points: u64,
    pub files: Vec<DumpFile>,
}

impl AnnManifest {
    pub(crate) fn encode(&self) -> Vec<u8> {
        codec::encode(ANN_MANIFEST_V1, self)
    }
    pub(crate) fn decode(key: &[u8], bytes: &[u8]) -> Result<Self> {
        codec::decode::<Self, ANN_MANIFEST_LIMIT>("meta", key, bytes, ANN_MANIFEST_V1)
    }
}
