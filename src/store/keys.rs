//! Key layouts. Integers in keys are big-endian so that range scans come out in id order.
//!
//! | tree        | key                                   |
//! |-------------|---------------------------------------|
//! | `meta`      | ASCII name (`header`, `counts`, `commit`, `kinds`, `dim/<vector name>`, `ann/<vector name>`) |
//! | `items`     | item_id: u64 BE                        |
//! | `item_keys` | external item key, UTF-8 bytes         |
//! | `vectors`   | item_id: u64 BE ++ vector name, UTF-8  |
//! | `histories` | external user key, UTF-8 bytes         |
//! | `history_chunks` | user key ++ 0xFF ++ chunk number: u64 BE |
//! | `popular`   | item_id: u64 BE                        |
//! | `sids`      | item_id: u64 BE                        |
//! | `sid_items` | code tuple: one u16 BE per level       |
//! | `topk`      | external user key, UTF-8 bytes         |
//! | `stale`     | external user key, UTF-8 bytes         |

use crate::{Error, Result};

pub(crate) const META_COUNTS: &[u8] = b"counts";
/// The commit counter, bumped by every write transaction (`commit.rs`).
pub(crate) const META_COMMIT: &[u8] = b"commit";
pub(crate) const META_KINDS: &[u8] = b"kinds";
pub(crate) const META_DIM_PREFIX: &[u8] = b"dim/";
pub(crate) const META_SID_TABLE: &[u8] = b"sid_table";
pub(crate) const META_ANN_PREFIX: &[u8] = b"ann/";
/// Entries per frozen history chunk.
pub(crate) const META_HISTORY_LAYOUT: &[u8] = b"history_layout";
/// The id of the model whose lists are current (the last one attached).
pub(crate) const META_MODEL: &[u8] = b"model";
/// The id of the last cluster catalog log entry this node applied (`src/db/catalog_log.rs`).
pub(crate) const META_CATALOG_LOG: &[u8] = b"catalog_log";

pub(crate) fn item_id(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

pub(crate) fn parse_item_id(tree: &'static str, key: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| Error::corruption(tree, key, "key is not an 8-byte item id"))?;
    Ok(u64::from_be_bytes(bytes))
}

pub(crate) fn vector(id: u64, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + name.len());
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

/// Splits a `vectors` key into (item id, vector name).
pub(crate) fn parse_vector(key: &[u8]) -> Result<(u64, String)> {
    if key.len() <= 8 {
        return Err(Error::corruption(
            "vectors",
            key,
            "key shorter than id + name",
        ));
    }
    let id = parse_item_id("vectors", &key[..8])?;
    let name = std::str::from_utf8(&key[8..])
        .map_err(|_| Error::corruption("vectors", key, "vector name is not UTF-8"))?;
    Ok((id, name.to_string()))
}

pub(crate) fn dim(name: &str) -> Vec<u8> {
    let mut k = META_DIM_PREFIX.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// `meta` key of the ANN manifest of vector `name`.
pub(crate) fn ann(name: &str) -> Vec<u8> {
    let mut k = META_ANN_PREFIX.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

pub(crate) fn parse_text(tree: &'static str, key: &[u8]) -> Result<String> {
    String::from_utf8(key.to_vec()).map_err(|_| Error::corruption(tree, key, "key is not UTF-8"))
}

/// A code tuple as a `sid_items` key: one u16 big-endian per level, so keys sort by tuple.
pub(crate) fn tuple(codes: &[u16]) -> Vec<u8> {
    codes.iter().flat_map(|c| c.to_be_bytes()).collect()
}

pub(crate) fn parse_tuple(key: &[u8]) -> Result<Vec<u16>> {
    if key.is_empty() || !key.len().is_multiple_of(2) {
        return Err(Error::corruption(
            "sid_items",
            key,
            "a code tuple key has an odd or zero length",
        ));
    }
    Ok(key
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect())
}
