//! Value layouts of every persisted record (see `docs/design.md` for the full table).
//!
//! Structured records are `[version u8][bincode 2 standard payload]`, decoded with a limit;
//! fixed-width records (and the columnar history, `history_record.rs`) are written by hand,
//! little-endian, behind the same version byte.

use bincode::{Decode, Encode};

use super::{codec, keys};
use crate::{Error, Result};

pub(crate) const ITEM_V1: u8 = 1;
pub(crate) const COUNTS_V1: u8 = 1;
pub(crate) const KINDS_V1: u8 = 1;
pub(crate) const DIM_V1: u8 = 1;
pub(crate) const VECTOR_V1: u8 = 1;
pub(crate) const POPULAR_V1: u8 = 1;
pub(crate) const MODEL_V1: u8 = 1;

const ITEM_LIMIT: usize = 4 << 20;
const SMALL_LIMIT: usize = 1 << 20;

/// `items[item_id]`: `[1][bincode ItemRecord]`. A deleted item keeps its record (live = false,
/// text and vectors dropped) so histories can still name it and a re-put revives the same id.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub(crate) struct ItemRecord {
    pub key: String,
    pub title: String,
    pub description: String,
    pub attributes: Vec<(String, String)>,
    /// Names of the vectors stored in `vectors` for this item, sorted.
    pub vector_names: Vec<String>,
    /// Catalog version of the write that created the item.
    pub created_version: u64,
    /// Catalog version of the last write that changed the item.
    pub updated_version: u64,
    pub live: bool,
}

impl ItemRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        codec::encode(ITEM_V1, self)
    }
    pub(crate) fn decode(key: &[u8], bytes: &[u8]) -> Result<Self> {
        codec::decode::<Self, ITEM_LIMIT>("items", key, bytes, ITEM_V1)
    }
}

pub(crate) use super::history_chunks::StoredHistory;
use super::history_record::MAX_CHUNK;
#[cfg(feature = "fuzzing")]
pub(crate) use super::history_record::{decode_legacy, parse_chunk, HeadRecord};
pub(crate) use super::history_record::{EntryRecord, HistoryView};

/// `meta["counts"]`: `[1][bincode Counts]`: id allocation and the totals `stats()` reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Counts {
    /// Next item id to hand out (ids start at 1 and are never reused).
    pub next_item_id: u64,
    /// Bumped by every write that changes the catalog.
    pub catalog_version: u64,
    pub live_items: u64,
    pub deleted_items: u64,
    pub users: u64,
    /// Interactions retained in histories.
    pub interactions: u64,
    /// Interactions ever recorded.
    pub recorded: u64,
}

impl Counts {
    pub(crate) fn initial() -> Self {
        Counts {
            next_item_id: 1,
            ..Counts::default()
        }
    }
    pub(crate) fn encode(&self) -> Vec<u8> {
        codec::encode(COUNTS_V1, self)
    }
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        codec::decode::<Self, SMALL_LIMIT>("meta", b"counts", bytes, COUNTS_V1)
    }
}

/// `meta["kinds"]`: `[1][bincode Vec<String>]`: the interned interaction kinds.
pub(crate) fn encode_kinds(kinds: &[String]) -> Vec<u8> {
    codec::encode(KINDS_V1, &kinds.to_vec())
}

pub(crate) fn decode_kinds(bytes: &[u8]) -> Result<Vec<String>> {
    codec::decode::<Vec<String>, SMALL_LIMIT>("meta", b"kinds", bytes, KINDS_V1)
}

/// `meta["dim/<name>"]`: `[1][u32 LE]`.
pub(crate) fn encode_dim(dim: usize) -> Vec<u8> {
    let mut out = vec![DIM_V1];
    out.extend_from_slice(&(dim as u32).to_le_bytes());
    out
}

pub(crate) fn decode_dim(key: &[u8], bytes: &[u8]) -> Result<usize> {
    match bytes {
        [DIM_V1, a, b, c, d] => Ok(u32::from_le_bytes([*a, *b, *c, *d]) as usize),
        _ => Err(Error::corruption(
            "meta",
            key,
            "expected [1][u32 LE] dimension",
        )),
    }
}

/// `meta["history_layout"]`: `[1][u32 LE]`, entries per frozen history chunk (set when the
/// database is created or upgraded, never changed).
pub(crate) fn encode_history_layout(chunk: usize) -> Vec<u8> {
    encode_dim(chunk)
}

pub(crate) fn decode_history_layout(bytes: &[u8]) -> Result<usize> {
    let bad = || {
        Error::corruption(
            "meta",
            keys::META_HISTORY_LAYOUT,
            format!("expected [1][u32 LE] chunk size in 1..={MAX_CHUNK}"),
        )
    };
    let chunk = decode_dim(keys::META_HISTORY_LAYOUT, bytes).map_err(|_| bad())?;
    if chunk == 0 || chunk > MAX_CHUNK {
        return Err(bad());
    }
    Ok(chunk)
}

/// `vectors[item_id ++ name]`: `[1][f32 LE; dim]`.
pub(crate) fn encode_vector(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 4 * values.len());
    out.push(VECTOR_V1);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

pub(crate) fn decode_vector(key: &[u8], bytes: &[u8], dim: usize) -> Result<Vec<f32>> {
    match bytes.split_first() {
        Some((&VECTOR_V1, body)) if body.len() == 4 * dim => Ok(body
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()),
        _ => Err(Error::corruption(
            "vectors",
            key,
            format!("expected [1][f32 LE x {dim}], found {} bytes", bytes.len()),
        )),
    }
}

/// `popular[item_id]`: `[1][u64 LE]`: retained interactions with the item.
/// `meta["model"]`: `[version 1][model id, 1..=128 UTF-8 bytes]`.
pub(crate) fn encode_model_id(id: &str) -> Vec<u8> {
    let mut out = vec![MODEL_V1];
    out.extend_from_slice(id.as_bytes());
    out
}

pub(crate) fn decode_model_id(bytes: &[u8]) -> Result<String> {
    let bad = |why: &str| Error::corruption("meta", keys::META_MODEL, why.to_string());
    match bytes.split_first() {
        Some((&MODEL_V1, id)) if !id.is_empty() && id.len() <= 128 => std::str::from_utf8(id)
            .map(str::to_string)
            .map_err(|_| bad("model id is not UTF-8")),
        Some((&MODEL_V1, _)) => Err(bad("model id must be 1 to 128 bytes")),
        _ => Err(bad("unknown record version")),
    }
}

pub(crate) fn encode_popular(count: u64) -> Vec<u8> {
    codec::encode_u64(POPULAR_V1, count)
}

pub(crate) fn decode_popular(key: &[u8], bytes: &[u8]) -> Result<u64> {
    codec::decode_u64("popular", key, bytes, POPULAR_V1)
}

/// `item_keys[key]`: the item id, 8 bytes big-endian (no version byte: it is a pointer).
pub(crate) fn decode_item_pointer(key: &[u8], bytes: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::corruption("item_keys", key, "expected an 8-byte item id"))?;
    Ok(u64::from_be_bytes(arr))
}

pub(crate) const SID_V1: u8 = 1;
pub(crate) const SID_ITEMS_V1: u8 = 1;

/// `sids[item_id]`: `[1][table version u64 LE][code u16 LE per level]`.
pub(crate) fn encode_sid(version: u64, codes: &[u16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + 2 * codes.len());
    out.push(SID_V1);
    out.extend_from_slice(&version.to_le_bytes());
    codes
        .iter()
        .for_each(|c| out.extend_from_slice(&c.to_le_bytes()));
    out
}

/// Returns (table version, codes).
pub(crate) fn decode_sid(key: &[u8], bytes: &[u8]) -> Result<(u64, Vec<u16>)> {
    match bytes.split_first() {
        Some((&SID_V1, rest))
            if rest.len() > 8 && rest.len() % 2 == 0 && rest.len() <= 8 + 2 * 8 =>
        {
            let version = u64::from_le_bytes(
                rest[..8]
                    .try_into()
                    .map_err(|_| Error::corruption("sids", key, "short"))?,
            );
            let codes = rest[8..]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            Ok((version, codes))
        }
        _ => Err(Error::corruption(
            "sids",
            key,
            format!(
                "expected [1][u64 LE][u16 LE x levels], found {} bytes",
                bytes.len()
            ),
        )),
    }
}

/// `sid_items[tuple]`: `[1][item_id u64 LE ...]`, ascending, non-empty.
pub(crate) fn encode_sid_items(ids: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 * ids.len());
    out.push(SID_ITEMS_V1);
    ids.iter()
        .for_each(|id| out.extend_from_slice(&id.to_le_bytes()));
    out
}

pub(crate) fn decode_sid_items(key: &[u8], bytes: &[u8]) -> Result<Vec<u64>> {
    match bytes.split_first() {
        Some((&SID_ITEMS_V1, rest)) if !rest.is_empty() && rest.len() % 8 == 0 => Ok(rest
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect()),
        _ => Err(Error::corruption(
            "sid_items",
            key,
            format!(
                "expected [1][u64 LE ...] with at least one id, found {} bytes",
                bytes.len()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes: every decoder returns Ok or Err; none panics or allocates without bound.
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = ItemRecord::decode(b"k", &bytes);
            let _ = HistoryView::parse(b"k", &bytes);
            let _ = super::super::history_record::parse_chunk(b"k", &bytes, 4);
            let _ = super::super::history_record::decode_legacy(b"k", &bytes);
            let _ = Counts::decode(&bytes);
            let _ = decode_kinds(&bytes);
            let _ = decode_dim(b"k", &bytes);
            let _ = decode_popular(b"k", &bytes);
            let _ = decode_item_pointer(b"k", &bytes);
            let _ = decode_vector(b"k", &bytes, bytes.len() / 4);
        }

        /// Every head round-trips, and every strict prefix of it is rejected.
        #[test]
        fn history_head_round_trip_and_truncation(entries in proptest::collection::vec((any::<u64>(), any::<i64>(), 0u32..10, any::<f32>()), 0..40)) {
            let tail: Vec<EntryRecord> = entries.iter().map(|&(item_id, timestamp, kind, weight)| EntryRecord { item_id, timestamp, kind, weight }).collect();
            let rec = super::super::history_record::HeadRecord {
                version: 3,
                recorded: tail.len() as u64 + 64,
                n: tail.len() as u32 + 64 - 3,
                first: 9,
                chunks: 1,
                skip: 3,
                frozen_ts: -4,
                tail,
            };
            let bytes = rec.encode();
            let back = super::super::history_record::HeadRecord::decode(b"k", &bytes).unwrap();
            prop_assert_eq!(back.encode(), bytes.clone());
            for cut in 0..bytes.len() {
                prop_assert!(HistoryView::parse(b"k", &bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn item_record_round_trip() {
        let rec = ItemRecord {
            key: "k".into(),
            title: "t".into(),
            description: "d".into(),
            attributes: vec![("a".into(), "b".into())],
            vector_names: vec!["v".into()],
            created_version: 1,
            updated_version: 2,
            live: true,
        };
        assert_eq!(ItemRecord::decode(b"k", &rec.encode()).unwrap(), rec);
        let v = encode_vector(&[1.0, -2.5]);
        assert_eq!(decode_vector(b"k", &v, 2).unwrap(), vec![1.0, -2.5]);
        assert!(decode_vector(b"k", &v, 3).is_err());
    }
}
