//! The history record, `histories[user key]`: columnar and fixed-width, so that the read path can
//! test "is this item in the user's history" straight from sled's bytes, without decoding or
//! allocating.
//!
//! ```text
//! offset      size   field
//! 0           1      record version = 1
//! 1           8      version   u64 LE  (bumped once per write batch touching the user)
//! 9           8      recorded  u64 LE  (interactions ever recorded for the user)
//! 17          4      n         u32 LE  (retained entries, <= MAX_HISTORY_LIMIT)
//! 21          8n     item_id   u64 LE each, oldest first
//! 21+8n       8n     timestamp i64 LE each
//! 21+16n      4n     kind      u32 LE each (0 = none, else index into meta["kinds"] + 1)
//! 21+20n      4n     weight    f32 LE each
//! ```
//! Total length is exactly `21 + 24n`; anything else is corruption.

use crate::config::MAX_HISTORY_LIMIT;
use crate::{Error, Result};

const V1: u8 = 1;
const HEADER: usize = 21;
const PER_ENTRY: usize = 24;

/// One retained interaction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct EntryRecord {
    pub item_id: u64,
    pub timestamp: i64,
    pub kind: u32,
    pub weight: f32,
}

/// A decoded history, for the write path and `check()`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct HistoryRecord {
    pub version: u64,
    pub recorded: u64,
    pub entries: Vec<EntryRecord>,
}

impl HistoryRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let n = self.entries.len();
        let mut out = Vec::with_capacity(HEADER + PER_ENTRY * n);
        out.push(V1);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.recorded.to_le_bytes());
        out.extend_from_slice(&(n as u32).to_le_bytes());
        self.entries
            .iter()
            .for_each(|e| out.extend_from_slice(&e.item_id.to_le_bytes()));
        self.entries
            .iter()
            .for_each(|e| out.extend_from_slice(&e.timestamp.to_le_bytes()));
        self.entries
            .iter()
            .for_each(|e| out.extend_from_slice(&e.kind.to_le_bytes()));
        self.entries
            .iter()
            .for_each(|e| out.extend_from_slice(&e.weight.to_le_bytes()));
        out
    }

    pub(crate) fn decode(key: &[u8], bytes: &[u8]) -> Result<Self> {
        let view = HistoryView::parse(key, bytes)?;
        let entries = (0..view.len()).map(|i| view.entry(i)).collect();
        Ok(HistoryRecord {
            version: view.version(),
            recorded: view.recorded(),
            entries,
        })
    }
}

/// A validated, zero-copy view of a stored history.
pub(crate) struct HistoryView<'a> {
    bytes: &'a [u8],
    n: usize,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

impl<'a> HistoryView<'a> {
    /// Checks the version byte, the entry count and the exact length.
    pub(crate) fn parse(key: &[u8], bytes: &'a [u8]) -> Result<Self> {
        let bad = |reason: String| Error::corruption("histories", key, reason);
        if bytes.len() < HEADER {
            return Err(bad(format!(
                "{} bytes, shorter than the 21-byte header",
                bytes.len()
            )));
        }
        if bytes[0] != V1 {
            return Err(bad(format!(
                "unknown record version {} (expected {V1})",
                bytes[0]
            )));
        }
        let n = u32_at(bytes, 17) as usize;
        if n > MAX_HISTORY_LIMIT {
            return Err(bad(format!(
                "claims {n} entries, over the limit of {MAX_HISTORY_LIMIT}"
            )));
        }
        if bytes.len() != HEADER + PER_ENTRY * n {
            return Err(bad(format!(
                "{} bytes, but {n} entries need exactly {}",
                bytes.len(),
                HEADER + PER_ENTRY * n
            )));
        }
        Ok(HistoryView { bytes, n })
    }

    pub(crate) fn len(&self) -> usize {
        self.n
    }

    pub(crate) fn version(&self) -> u64 {
        u64_at(self.bytes, 1)
    }

    pub(crate) fn recorded(&self) -> u64 {
        u64_at(self.bytes, 9)
    }

    /// The item-id column, oldest first.
    pub(crate) fn item_ids(&self) -> &'a [u8] {
        &self.bytes[HEADER..HEADER + 8 * self.n]
    }

    /// Whether `id` occurs in the history (a linear scan of the id column).
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.item_ids().chunks_exact(8).any(|c| u64_at(c, 0) == id)
    }

    pub(crate) fn entry(&self, i: usize) -> EntryRecord {
        let n = self.n;
        EntryRecord {
            item_id: u64_at(self.bytes, HEADER + 8 * i),
            timestamp: u64_at(self.bytes, HEADER + 8 * n + 8 * i) as i64,
            kind: u32_at(self.bytes, HEADER + 16 * n + 4 * i),
            weight: f32::from_bits(u32_at(self.bytes, HEADER + 20 * n + 4 * i)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HistoryRecord {
        HistoryRecord {
            version: 7,
            recorded: 9,
            entries: vec![
                EntryRecord {
                    item_id: 3,
                    timestamp: -5,
                    kind: 0,
                    weight: 1.0,
                },
                EntryRecord {
                    item_id: u64::MAX,
                    timestamp: 10,
                    kind: 2,
                    weight: 4.5,
                },
            ],
        }
    }

    #[test]
    fn round_trip_view_and_contains() {
        let rec = sample();
        let bytes = rec.encode();
        assert_eq!(bytes.len(), 21 + 2 * 24);
        assert_eq!(HistoryRecord::decode(b"u", &bytes).unwrap(), rec);
        let view = HistoryView::parse(b"u", &bytes).unwrap();
        assert_eq!((view.version(), view.recorded(), view.len()), (7, 9, 2));
        assert!(view.contains(3) && view.contains(u64::MAX) && !view.contains(4));
    }

    #[test]
    fn wrong_lengths_counts_and_versions_are_corruption() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(
                HistoryView::parse(b"u", &bytes[..cut]).is_err(),
                "prefix {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(HistoryView::parse(b"u", &longer).is_err());
        let mut huge = bytes.clone();
        huge[17..21].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = HistoryView::parse(b"u", &huge).err().unwrap();
        assert!(err.to_string().contains("over the limit"), "{err}");
        let mut version = bytes;
        version[0] = 2;
        assert!(matches!(
            HistoryView::parse(b"u", &version),
            Err(Error::Corruption {
                tree: "histories",
                ..
            })
        ));
    }
}
