//! The 24-byte history entry of the cluster tier:
//!
//! ```text
//! 0   8  timestamp key: (timestamp as u64 XOR 1<<63), big-endian, so bytes order as timestamps
//! 8   8  item id u64 LE (the node-local catalog's id)
//! 16  4  kind u32 LE
//! 20  4  weight f32 LE
//! ```

use crate::{Error, Result};

/// Bytes per entry.
pub(crate) const ENTRY: usize = 24;

/// One history entry as the cluster stores it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClusterEntry {
    /// The item's id in the node-local catalog.
    pub item_id: u64,
    /// Timestamp (the caller's unit; ordering only).
    pub timestamp: i64,
    /// Interaction kind code.
    pub kind: u32,
    /// Weight.
    pub weight: f32,
}

impl ClusterEntry {
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&((self.timestamp as u64) ^ (1 << 63)).to_be_bytes());
        out.extend_from_slice(&self.item_id.to_le_bytes());
        out.extend_from_slice(&self.kind.to_le_bytes());
        out.extend_from_slice(&self.weight.to_le_bytes());
    }

    fn decode(b: &[u8]) -> ClusterEntry {
        let u = |r: std::ops::Range<usize>| -> [u8; 8] { b[r].try_into().unwrap_or([0; 8]) };
        let w = |r: std::ops::Range<usize>| -> [u8; 4] { b[r].try_into().unwrap_or([0; 4]) };
        ClusterEntry {
            timestamp: (u64::from_be_bytes(u(0..8)) ^ (1 << 63)) as i64,
            item_id: u64::from_le_bytes(u(8..16)),
            kind: u32::from_le_bytes(w(16..20)),
            weight: f32::from_le_bytes(w(20..24)),
        }
    }
}

/// Encodes a batch sorted by timestamp, ties in the given (arrival) order.
pub(crate) fn encode_sorted(entries: &[ClusterEntry]) -> Vec<u8> {
    let mut sorted = entries.to_vec();
    sorted.sort_by_key(|e| e.timestamp);
    let mut out = Vec::with_capacity(ENTRY * sorted.len());
    for e in &sorted {
        e.encode_into(&mut out);
    }
    out
}

/// Decodes a history string; a length that is not a whole number of entries is corruption.
pub(crate) fn decode_all(user: &str, bytes: &[u8]) -> Result<Vec<ClusterEntry>> {
    if !bytes.len().is_multiple_of(ENTRY) {
        return Err(Error::corruption(
            "cluster history",
            user.as_bytes(),
            format!("{} bytes, not a multiple of {ENTRY}", bytes.len()),
        ));
    }
    Ok(bytes
        .chunks_exact(ENTRY)
        .map(ClusterEntry::decode)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_keys_order_as_timestamps() {
        let ts = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        let keys: Vec<Vec<u8>> = ts
            .iter()
            .map(|&t| {
                let mut v = Vec::new();
                ClusterEntry {
                    item_id: 1,
                    timestamp: t,
                    kind: 0,
                    weight: 1.0,
                }
                .encode_into(&mut v);
                v[..8].to_vec()
            })
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let e = ClusterEntry {
            item_id: 9,
            timestamp: -3,
            kind: 4,
            weight: 0.5,
        };
        let mut v = Vec::new();
        e.encode_into(&mut v);
        assert_eq!(decode_all("u", &v).unwrap(), vec![e]);
        assert!(decode_all("u", &v[..23]).is_err());
    }
}
