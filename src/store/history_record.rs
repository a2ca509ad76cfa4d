//! History records (format 2): a small mutable head, `histories[user key]`, holding the counters,
//! the chunk bookkeeping and the newest entries (the tail), plus frozen, immutable chunks of
//! exactly `chunk` entries each in `history_chunks` (`history_chunks.rs`). An append rewrites the
//! head only (its tail is shorter than one chunk); every `chunk` appends freeze the tail into a
//! new chunk. Entries are columnar and fixed-width everywhere, so the read path tests "is this
//! item in the user's history" straight from sled's bytes.
//!
//! ```text
//! head, record version 2
//! offset  size  field
//! 0       1     record version = 2
//! 1       8     version    u64 LE  (bumped once per write batch touching the user)
//! 9       8     recorded   u64 LE  (interactions ever recorded for the user)
//! 17      4     n          u32 LE  (retained entries, chunks and tail, <= MAX_HISTORY_LIMIT)
//! 21      8     first      u64 LE  (number of the oldest frozen chunk)
//! 29      4     chunks     u32 LE  (frozen chunks: numbers first .. first + chunks)
//! 33      4     skip       u32 LE  (leading entries of the oldest chunk no longer retained)
//! 37      8     frozen_ts  i64 LE  (timestamp of the newest frozen entry; 0 without chunks)
//! 45      4     t          u32 LE  (tail entries, < chunk)
//! 49      24t   tail block (below)
//!
//! chunk, record version 1
//! 0       1     record version = 1
//! 1       4     count      u32 LE  (= the database's chunk size)
//! 5       24c   block
//!
//! block of c entries: item_id u64 LE × c, timestamp i64 LE × c, kind u32 LE × c (0 = none,
//! else index into meta["kinds"] + 1), weight f32 LE × c
//! ```
//! Lengths are exact; anything else is corruption. `n = chunks × chunk − skip + t`.
//!
//! Format 1 kept the whole history in one record (`[1][version][recorded][n][block]`); it is
//! read only by the upgrade (`upgrade.rs`).

use crate::config::MAX_HISTORY_LIMIT;
use crate::{Error, Result};

pub(crate) const HEAD_V2: u8 = 2;
const CHUNK_V1: u8 = 1;
const LEGACY_V1: u8 = 1;
const HEAD_LEN: usize = 49;
const CHUNK_HEADER: usize = 5;
const LEGACY_HEADER: usize = 21;
pub(crate) const PER_ENTRY: usize = 24;
/// The largest chunk size a database may use (`Config::history_chunk_entries`).
pub(crate) const MAX_CHUNK: usize = 4096;

/// One retained interaction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct EntryRecord {
    pub item_id: u64,
    pub timestamp: i64,
    pub kind: u32,
    pub weight: f32,
}

/// A whole history, decoded: what `check()`, the upgrade and the consistency harness compare.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct HistoryRecord {
    pub version: u64,
    pub recorded: u64,
    pub entries: Vec<EntryRecord>,
}

/// The decoded head, for the write path.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct HeadRecord {
    pub version: u64,
    pub recorded: u64,
    pub n: u32,
    pub first: u64,
    pub chunks: u32,
    pub skip: u32,
    pub frozen_ts: i64,
    pub tail: Vec<EntryRecord>,
}

impl HeadRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD_LEN + PER_ENTRY * self.tail.len());
        out.push(HEAD_V2);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.recorded.to_le_bytes());
        out.extend_from_slice(&self.n.to_le_bytes());
        out.extend_from_slice(&self.first.to_le_bytes());
        out.extend_from_slice(&self.chunks.to_le_bytes());
        out.extend_from_slice(&self.skip.to_le_bytes());
        out.extend_from_slice(&self.frozen_ts.to_le_bytes());
        out.extend_from_slice(&(self.tail.len() as u32).to_le_bytes());
        encode_block(&mut out, &self.tail);
        out
    }

    pub(crate) fn decode(key: &[u8], bytes: &[u8]) -> Result<Self> {
        Ok(Self::of(&HistoryView::parse(key, bytes)?))
    }

    /// The head a validated view shows.
    pub(crate) fn of(v: &HistoryView<'_>) -> Self {
        HeadRecord {
            version: v.version(),
            recorded: v.recorded(),
            n: v.len() as u32,
            first: v.first_chunk(),
            chunks: v.chunks(),
            skip: v.skip(),
            frozen_ts: v.frozen_ts(),
            tail: v.tail().entries(),
        }
    }
}

/// Appends the columns of `entries` to `out`.
pub(crate) fn encode_block(out: &mut Vec<u8>, entries: &[EntryRecord]) {
    entries
        .iter()
        .for_each(|e| out.extend_from_slice(&e.item_id.to_le_bytes()));
    entries
        .iter()
        .for_each(|e| out.extend_from_slice(&e.timestamp.to_le_bytes()));
    entries
        .iter()
        .for_each(|e| out.extend_from_slice(&e.kind.to_le_bytes()));
    entries
        .iter()
        .for_each(|e| out.extend_from_slice(&e.weight.to_le_bytes()));
}

/// A frozen chunk's value.
pub(crate) fn encode_chunk(entries: &[EntryRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHUNK_HEADER + PER_ENTRY * entries.len());
    out.push(CHUNK_V1);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    encode_block(&mut out, entries);
    out
}

/// A zero-copy view of `n` columnar entries.
#[derive(Clone, Copy)]
pub(crate) struct BlockView<'a> {
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

impl<'a> BlockView<'a> {
    /// The block of a chunk or head already validated by [`parse_chunk`] or
    /// [`HistoryView::parse`] (`tail = true` for a head). Never panics: on bytes that were not
    /// validated it sees at most the whole entries they hold.
    pub(crate) fn of_checked(bytes: &'a [u8], n: usize, tail: bool) -> Self {
        let at = if tail { HEAD_LEN } else { CHUNK_HEADER };
        let bytes = bytes.get(at..).unwrap_or(&[]);
        BlockView {
            bytes,
            n: n.min(bytes.len() / PER_ENTRY),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.n
    }

    pub(crate) fn item_id(&self, i: usize) -> u64 {
        u64_at(self.bytes, 8 * i)
    }

    pub(crate) fn timestamp(&self, i: usize) -> i64 {
        u64_at(self.bytes, 8 * self.n + 8 * i) as i64
    }

    /// Whether `id` occurs in the block (a linear scan of the id column).
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.bytes[..8 * self.n]
            .chunks_exact(8)
            .any(|c| u64_at(c, 0) == id)
    }

    pub(crate) fn entry(&self, i: usize) -> EntryRecord {
        let n = self.n;
        EntryRecord {
            item_id: u64_at(self.bytes, 8 * i),
            timestamp: u64_at(self.bytes, 8 * n + 8 * i) as i64,
            kind: u32_at(self.bytes, 16 * n + 4 * i),
            weight: f32::from_bits(u32_at(self.bytes, 20 * n + 4 * i)),
        }
    }

    pub(crate) fn entries(&self) -> Vec<EntryRecord> {
        (0..self.n).map(|i| self.entry(i)).collect()
    }
}

/// A validated, zero-copy view of a stored head. `len()` is the whole retained history (chunks
/// and tail); only the tail's entries are in these bytes.
pub(crate) struct HistoryView<'a> {
    bytes: &'a [u8],
    t: usize,
}

impl<'a> HistoryView<'a> {
    /// Checks the version byte, the counts and the exact length. The relation to the database's
    /// chunk size is checked by [`HistoryView::check_layout`].
    pub(crate) fn parse(key: &[u8], bytes: &'a [u8]) -> Result<Self> {
        let bad = |reason: String| Error::corruption("histories", key, reason);
        if bytes.len() < HEAD_LEN {
            return Err(bad(format!(
                "{} bytes, shorter than the {HEAD_LEN}-byte head",
                bytes.len()
            )));
        }
        if bytes[0] != HEAD_V2 {
            return Err(bad(format!(
                "unknown record version {} (expected {HEAD_V2})",
                bytes[0]
            )));
        }
        let n = u32_at(bytes, 17) as usize;
        if n > MAX_HISTORY_LIMIT {
            return Err(bad(format!(
                "claims {n} entries, over the limit of {MAX_HISTORY_LIMIT}"
            )));
        }
        let t = u32_at(bytes, 45) as usize;
        if t > MAX_CHUNK || t > n {
            return Err(bad(format!(
                "claims {t} tail entries of {n} retained (at most {MAX_CHUNK})"
            )));
        }
        if bytes.len() != HEAD_LEN + PER_ENTRY * t {
            return Err(bad(format!(
                "{} bytes, but {t} tail entries need exactly {}",
                bytes.len(),
                HEAD_LEN + PER_ENTRY * t
            )));
        }
        let view = HistoryView { bytes, t };
        if view.chunks() == 0 && (view.skip() != 0 || n != t) {
            return Err(bad(format!(
                "no chunks, but skip {} and {n} retained entries with {t} in the tail",
                view.skip()
            )));
        }
        if view
            .first_chunk()
            .checked_add(view.chunks() as u64)
            .is_none()
        {
            return Err(bad("chunk numbers overflow".into()));
        }
        Ok(view)
    }

    /// Checks the counts against the database's chunk size: `n = chunks × chunk − skip + t`,
    /// `skip < chunk`, `t < chunk`.
    pub(crate) fn check_layout(&self, key: &[u8], chunk: usize) -> Result<()> {
        let (chunks, skip) = (self.chunks() as usize, self.skip() as usize);
        let expect = (chunks * chunk + self.t).checked_sub(skip);
        if self.t >= chunk || skip >= chunk.max(1) || expect != Some(self.len()) {
            return Err(Error::corruption(
                "histories",
                key,
                format!(
                    "{} retained entries do not match {chunks} chunks of {chunk}, skip {skip} \
                     and {} tail entries",
                    self.len(),
                    self.t
                ),
            ));
        }
        Ok(())
    }

    /// Retained entries: chunks and tail.
    pub(crate) fn len(&self) -> usize {
        u32_at(self.bytes, 17) as usize
    }

    pub(crate) fn version(&self) -> u64 {
        u64_at(self.bytes, 1)
    }

    pub(crate) fn recorded(&self) -> u64 {
        u64_at(self.bytes, 9)
    }

    pub(crate) fn first_chunk(&self) -> u64 {
        u64_at(self.bytes, 21)
    }

    pub(crate) fn chunks(&self) -> u32 {
        u32_at(self.bytes, 29)
    }

    pub(crate) fn skip(&self) -> u32 {
        u32_at(self.bytes, 33)
    }

    pub(crate) fn frozen_ts(&self) -> i64 {
        u64_at(self.bytes, 37) as i64
    }

    pub(crate) fn tail(&self) -> BlockView<'a> {
        BlockView {
            bytes: &self.bytes[HEAD_LEN..],
            n: self.t,
        }
    }
}

/// Parses a frozen chunk: exactly `chunk` entries.
pub(crate) fn parse_chunk<'a>(key: &[u8], bytes: &'a [u8], chunk: usize) -> Result<BlockView<'a>> {
    let bad = |reason: String| Error::corruption("history_chunks", key, reason);
    if bytes.len() < CHUNK_HEADER || bytes[0] != CHUNK_V1 {
        return Err(bad(format!(
            "{} bytes without a version-{CHUNK_V1} chunk header",
            bytes.len()
        )));
    }
    let count = u32_at(bytes, 1) as usize;
    if count != chunk || bytes.len() != CHUNK_HEADER + PER_ENTRY * count {
        return Err(bad(format!(
            "{} bytes claiming {count} entries, but chunks hold exactly {chunk} ({} bytes)",
            bytes.len(),
            CHUNK_HEADER + PER_ENTRY * chunk
        )));
    }
    Ok(BlockView {
        bytes: &bytes[CHUNK_HEADER..],
        n: count,
    })
}

/// Decodes a format-1 history record (the whole history in one value), for the upgrade.
pub(crate) fn decode_legacy(key: &[u8], bytes: &[u8]) -> Result<HistoryRecord> {
    let bad = |reason: String| Error::corruption("histories", key, reason);
    if bytes.len() < LEGACY_HEADER || bytes[0] != LEGACY_V1 {
        return Err(bad(format!(
            "{} bytes, not a format-1 history record",
            bytes.len()
        )));
    }
    let n = u32_at(bytes, 17) as usize;
    if n > MAX_HISTORY_LIMIT || bytes.len() != LEGACY_HEADER + PER_ENTRY * n {
        return Err(bad(format!(
            "format-1 record of {} bytes claiming {n} entries",
            bytes.len()
        )));
    }
    let block = BlockView {
        bytes: &bytes[LEGACY_HEADER..],
        n,
    };
    Ok(HistoryRecord {
        version: u64_at(bytes, 1),
        recorded: u64_at(bytes, 9),
        entries: block.entries(),
    })
}

/// Whether `bytes` is a format-1 history record (version byte 1; format-2 heads carry 2).
pub(crate) fn is_legacy(bytes: &[u8]) -> bool {
    bytes.first() == Some(&LEGACY_V1)
}

#[cfg(test)]
pub(crate) fn encode_legacy(rec: &HistoryRecord) -> Vec<u8> {
    let mut out = vec![LEGACY_V1];
    out.extend_from_slice(&rec.version.to_le_bytes());
    out.extend_from_slice(&rec.recorded.to_le_bytes());
    out.extend_from_slice(&(rec.entries.len() as u32).to_le_bytes());
    encode_block(&mut out, &rec.entries);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(item_id: u64, timestamp: i64) -> EntryRecord {
        EntryRecord {
            item_id,
            timestamp,
            kind: 2,
            weight: 4.5,
        }
    }

    fn head() -> HeadRecord {
        HeadRecord {
            version: 7,
            recorded: 90,
            n: 2 * 4 - 1 + 2,
            first: 3,
            chunks: 2,
            skip: 1,
            frozen_ts: 10,
            tail: vec![entry(3, 11), entry(u64::MAX, 12)],
        }
    }

    #[test]
    fn head_round_trip_and_layout() {
        let rec = head();
        let bytes = rec.encode();
        assert_eq!(bytes.len(), HEAD_LEN + 2 * PER_ENTRY);
        assert_eq!(HeadRecord::decode(b"u", &bytes).unwrap(), rec);
        let view = HistoryView::parse(b"u", &bytes).unwrap();
        assert_eq!((view.version(), view.recorded(), view.len()), (7, 90, 9));
        assert!(view.tail().contains(3) && view.tail().contains(u64::MAX));
        assert!(!view.tail().contains(4));
        view.check_layout(b"u", 4).unwrap();
        assert!(view.check_layout(b"u", 5).is_err());
        assert!(
            view.check_layout(b"u", 2).is_err(),
            "tail as long as a chunk"
        );
    }

    #[test]
    fn wrong_lengths_counts_and_versions_are_corruption() {
        let bytes = head().encode();
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
        version[0] = 1;
        assert!(matches!(
            HistoryView::parse(b"u", &version),
            Err(Error::Corruption {
                tree: "histories",
                ..
            })
        ));
    }

    #[test]
    fn chunks_hold_exactly_the_chunk_size() {
        let entries: Vec<EntryRecord> = (0..4).map(|i| entry(i, i as i64)).collect();
        let bytes = encode_chunk(&entries);
        let block = parse_chunk(b"k", &bytes, 4).unwrap();
        assert_eq!(block.entries(), entries);
        assert!(parse_chunk(b"k", &bytes, 3).is_err());
        for cut in 0..bytes.len() {
            assert!(parse_chunk(b"k", &bytes[..cut], 4).is_err());
        }
    }

    #[test]
    fn legacy_records_decode() {
        let rec = HistoryRecord {
            version: 2,
            recorded: 3,
            entries: vec![entry(1, 5), entry(2, 6)],
        };
        let bytes = encode_legacy(&rec);
        assert!(is_legacy(&bytes));
        assert_eq!(decode_legacy(b"u", &bytes).unwrap(), rec);
        assert!(decode_legacy(b"u", &bytes[..bytes.len() - 1]).is_err());
        assert!(HistoryView::parse(b"u", &bytes).is_err());
    }
}
