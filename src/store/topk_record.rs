//! The cached list record, `topk[user key]`: fixed-width columns behind a small header, so the
//! read path answers straight from sled's bytes (one bounds-checked parse, no decoding pass).
//!
//! ```text
//! offset        size  field
//! 0             1     record version = 1
//! 1             8     history_version u64 LE  (the history version the list was computed from)
//! 9             8     sid_version     u64 LE  (the tokenization version of the codes it used)
//! 17            8     computed_at_ms  u64 LE  (Unix time, milliseconds)
//! 25            1     m               model id length, 1..=128
//! 26            m     model id, UTF-8
//! 26+m          2     n               u16 LE items, <= MAX_TOPK
//! 28+m          8n    item_id u64 LE each, best first
//! 28+m+8n       4n    score   f32 LE each
//! ```
//! Total length is exactly `28 + m + 12n`; anything else is corruption.

use crate::{Error, Result};

const V1: u8 = 1;
const FIXED: usize = 26;
/// Longest model id (the bundle manifest allows 1 to 128 bytes).
pub(crate) const MAX_MODEL_ID: usize = 128;
/// Most items one cached list holds.
pub(crate) const MAX_TOPK: usize = 4096;

/// A list to store.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TopkRecord {
    pub history_version: u64,
    pub sid_version: u64,
    pub computed_at_ms: u64,
    pub model_id: String,
    pub items: Vec<(u64, f32)>,
}

impl TopkRecord {
    /// Encodes the record; `model_id` and `items` must respect the limits (the writer checks).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let id = self.model_id.as_bytes();
        let m = id.len().min(MAX_MODEL_ID);
        let n = self.items.len().min(MAX_TOPK);
        debug_assert!(m == id.len() && n == self.items.len());
        let mut out = Vec::with_capacity(FIXED + 2 + m + 12 * n);
        out.push(V1);
        out.extend_from_slice(&self.history_version.to_le_bytes());
        out.extend_from_slice(&self.sid_version.to_le_bytes());
        out.extend_from_slice(&self.computed_at_ms.to_le_bytes());
        out.push(m as u8);
        out.extend_from_slice(&id[..m]);
        out.extend_from_slice(&(n as u16).to_le_bytes());
        for (item, _) in &self.items[..n] {
            out.extend_from_slice(&item.to_le_bytes());
        }
        for (_, score) in &self.items[..n] {
            out.extend_from_slice(&score.to_le_bytes());
        }
        out
    }
}

/// A validated view over a stored list.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TopkView<'a> {
    bytes: &'a [u8],
    model_end: usize,
    n: usize,
}

impl<'a> TopkView<'a> {
    /// Checks the layout of `bytes` (stored under `user`).
    pub(crate) fn parse(user: &[u8], bytes: &'a [u8]) -> Result<Self> {
        let bad = |why: String| Error::corruption("topk", user, why);
        if bytes.len() < FIXED + 2 {
            return Err(bad(format!(
                "{} bytes, shorter than the {}-byte header",
                bytes.len(),
                FIXED + 2
            )));
        }
        if bytes[0] != V1 {
            return Err(bad(format!(
                "unknown record version {} (expected {V1})",
                bytes[0]
            )));
        }
        let m = bytes[25] as usize;
        if m == 0 || m > MAX_MODEL_ID {
            return Err(bad(format!(
                "model id length {m} is not in 1..={MAX_MODEL_ID}"
            )));
        }
        let model_end = FIXED + m;
        if bytes.len() < model_end + 2 {
            return Err(bad("truncated inside the model id".into()));
        }
        if std::str::from_utf8(&bytes[FIXED..model_end]).is_err() {
            return Err(bad("model id is not UTF-8".into()));
        }
        let n = u16::from_le_bytes([bytes[model_end], bytes[model_end + 1]]) as usize;
        if n > MAX_TOPK {
            return Err(bad(format!("{n} items, over the limit of {MAX_TOPK}")));
        }
        let want = model_end + 2 + 12 * n;
        if bytes.len() != want {
            return Err(bad(format!(
                "{} bytes, but {n} items need exactly {want}",
                bytes.len()
            )));
        }
        Ok(TopkView {
            bytes,
            model_end,
            n,
        })
    }

    fn u64_at(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bytes[at..at + 8]);
        u64::from_le_bytes(b)
    }

    pub(crate) fn history_version(&self) -> u64 {
        self.u64_at(1)
    }

    pub(crate) fn sid_version(&self) -> u64 {
        self.u64_at(9)
    }

    pub(crate) fn computed_at_ms(&self) -> u64 {
        self.u64_at(17)
    }

    pub(crate) fn model_id(&self) -> &'a str {
        // Checked in `parse`.
        std::str::from_utf8(&self.bytes[FIXED..self.model_end]).unwrap_or("")
    }

    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// Item `i` (best first) and its score.
    pub(crate) fn item(&self, i: usize) -> (u64, f32) {
        let ids = self.model_end + 2;
        let id = self.u64_at(ids + 8 * i);
        let at = ids + 8 * self.n + 4 * i;
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.bytes[at..at + 4]);
        (id, f32::from_le_bytes(b))
    }

    #[cfg(test)]
    pub(crate) fn to_record(self) -> TopkRecord {
        TopkRecord {
            history_version: self.history_version(),
            sid_version: self.sid_version(),
            computed_at_ms: self.computed_at_ms(),
            model_id: self.model_id().to_string(),
            items: (0..self.n).map(|i| self.item(i)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(hv in any::<u64>(), sv in any::<u64>(), at in any::<u64>(),
                      id in "[a-z0-9-]{1,128}",
                      items in proptest::collection::vec((any::<u64>(), any::<f32>()), 0..64)) {
            let rec = TopkRecord { history_version: hv, sid_version: sv, computed_at_ms: at,
                                   model_id: id, items };
            let bytes = rec.encode();
            let view = TopkView::parse(b"u", &bytes).unwrap();
            let back = view.to_record();
            prop_assert_eq!(back.history_version, rec.history_version);
            prop_assert_eq!(back.model_id, rec.model_id);
            prop_assert_eq!(back.items.len(), rec.items.len());
            for (a, b) in back.items.iter().zip(&rec.items) {
                prop_assert_eq!(a.0, b.0);
                prop_assert_eq!(a.1.to_bits(), b.1.to_bits());
            }
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(v) = TopkView::parse(b"u", &bytes) {
                for i in 0..v.len() { let _ = v.item(i); }
                let _ = v.model_id();
            }
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let rec = TopkRecord {
            history_version: 3,
            sid_version: 1,
            computed_at_ms: 9,
            model_id: "m".into(),
            items: vec![(1, 0.5), (2, -1.0)],
        };
        let bytes = rec.encode();
        for cut in 0..bytes.len() {
            assert!(TopkView::parse(b"u", &bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(TopkView::parse(b"u", &long).is_err());
    }
}
