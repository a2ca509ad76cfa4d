//! Frozen history chunks (`history_chunks[user key ++ 0xFF ++ chunk number u64 BE]`) and the
//! reader that assembles a whole history from its head and chunks.
//!
//! The separator byte 0xFF never occurs in UTF-8, so one user's chunks are exactly the keys that
//! start with `user ++ 0xFF`, in chunk order.

use sled::IVec;

use super::history_record::{parse_chunk, BlockView, EntryRecord, HistoryRecord, HistoryView};
use super::{Store, TreeId};
use crate::{Error, Result};

const SEP: u8 = 0xFF;

/// The key of chunk `no` of `user`.
pub(crate) fn chunk_key(user: &[u8], no: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(user.len() + 9);
    k.extend_from_slice(user);
    k.push(SEP);
    k.extend_from_slice(&no.to_be_bytes());
    k
}

/// Splits a chunk key into (user key, chunk number).
pub(crate) fn parse_chunk_key(key: &[u8]) -> Result<(&[u8], u64)> {
    let bad = || Error::corruption("history_chunks", key, "not a user key ++ 0xFF ++ u64 key");
    if key.len() < 10 || key[key.len() - 9] != SEP {
        return Err(bad());
    }
    let (user, rest) = key.split_at(key.len() - 9);
    let no: [u8; 8] = rest[1..].try_into().map_err(|_| bad())?;
    if std::str::from_utf8(user).is_err() {
        return Err(bad());
    }
    Ok((user, u64::from_be_bytes(no)))
}

/// A user's retained history as stored: the head and its retained chunks, oldest first, read
/// in one get and one range scan. Entry access is by index, straight from sled's bytes.
pub(crate) struct StoredHistory {
    head: IVec,
    chunks: Vec<IVec>,
    chunk: usize,
    skip: usize,
    len: usize,
    tail_len: usize,
    version: u64,
    recorded: u64,
    frozen_ts: i64,
}

impl StoredHistory {
    /// Reads `user`'s history: `None` when the user has none.
    pub(crate) fn load(store: &Store, user: &[u8]) -> Result<Option<StoredHistory>> {
        let Some(head) = store.get(TreeId::Histories, user)? else {
            return Ok(None);
        };
        StoredHistory::from_head(store, user, head).map(Some)
    }

    /// Completes a head already read (e.g. by a scan of `histories`) with its chunks.
    pub(crate) fn from_head(store: &Store, user: &[u8], head: IVec) -> Result<StoredHistory> {
        let chunk = store.history_chunk;
        let view = HistoryView::parse(user, &head)?;
        view.check_layout(user, chunk)?;
        let (first, count) = (view.first_chunk(), view.chunks() as u64);
        let (skip, len) = (view.skip() as usize, view.len());
        let (tail_len, version, recorded) = (view.tail().len(), view.version(), view.recorded());
        let frozen_ts = view.frozen_ts();
        let mut chunks = Vec::with_capacity(count as usize);
        if count > 0 {
            let range = chunk_key(user, first)..chunk_key(user, first + count);
            for (i, kv) in store.tree(TreeId::HistoryChunks).range(range).enumerate() {
                let (k, v) = kv?;
                let (_, no) = parse_chunk_key(&k)?;
                if no != first + i as u64 {
                    return Err(missing(user, first + i as u64));
                }
                parse_chunk(&k, &v, chunk)?;
                chunks.push(v);
            }
            if chunks.len() as u64 != count {
                return Err(missing(user, first + chunks.len() as u64));
            }
        }
        Ok(StoredHistory {
            head,
            chunks,
            chunk,
            skip,
            len,
            tail_len,
            version,
            recorded,
            frozen_ts,
        })
    }

    // The head and chunks were validated in `from_head`; the bytes are immutable.
    fn tail(&self) -> BlockView<'_> {
        BlockView::of_checked(&self.head, self.tail_len, true)
    }

    fn block(&self, c: usize) -> BlockView<'_> {
        BlockView::of_checked(&self.chunks[c], self.chunk, false)
    }

    /// Retained entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    pub(crate) fn recorded(&self) -> u64 {
        self.recorded
    }

    /// The blocks that hold the retained entries, oldest first, each with the index of its first
    /// retained entry.
    fn blocks(&self) -> impl Iterator<Item = (BlockView<'_>, usize)> {
        let chunks =
            (0..self.chunks.len()).map(|c| (self.block(c), if c == 0 { self.skip } else { 0 }));
        chunks.chain(std::iter::once((self.tail(), 0)))
    }

    /// Entry `i` (0 = oldest retained).
    #[cfg(test)]
    pub(crate) fn entry(&self, i: usize) -> EntryRecord {
        let at = i + self.skip;
        let c = at / self.chunk;
        if c < self.chunks.len() {
            self.block(c).entry(at % self.chunk)
        } else {
            self.tail().entry(at - self.chunks.len() * self.chunk)
        }
    }

    /// Every retained entry, oldest first.
    pub(crate) fn entries(&self) -> Vec<EntryRecord> {
        let mut out = Vec::with_capacity(self.len);
        for (block, from) in self.blocks() {
            out.extend((from..block.len()).map(|i| block.entry(i)));
        }
        out
    }

    /// Every retained item id, oldest first.
    pub(crate) fn item_ids(&self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.len);
        for (block, from) in self.blocks() {
            out.extend((from..block.len()).map(|i| block.item_id(i)));
        }
        out
    }

    /// Whether `id` is retained (a scan of the id columns, in place).
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.blocks().any(|(block, from)| {
            if from == 0 {
                block.contains(id)
            } else {
                (from..block.len()).any(|i| block.item_id(i) == id)
            }
        })
    }

    /// The whole history, decoded.
    pub(crate) fn record(&self) -> HistoryRecord {
        HistoryRecord {
            version: self.version(),
            recorded: self.recorded(),
            entries: self.entries(),
        }
    }

    /// The stored timestamp of the newest frozen entry, for `check()`.
    pub(crate) fn frozen_ts(&self) -> Option<(i64, i64)> {
        let last = self.chunks.len().checked_sub(1)?;
        Some((self.frozen_ts, self.block(last).timestamp(self.chunk - 1)))
    }
}

fn missing(user: &[u8], no: u64) -> Error {
    Error::corruption(
        "histories",
        user,
        format!("the head names history chunk {no}, which is missing"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_keys_round_trip_and_sort_by_user_then_number() {
        let k = chunk_key("ü".as_bytes(), 258);
        assert_eq!(parse_chunk_key(&k).unwrap(), ("ü".as_bytes(), 258));
        assert!(chunk_key(b"a", 1) < chunk_key(b"a", 2));
        // No key of a user whose key extends another's falls in the shorter user's range.
        let range = chunk_key(b"a", 0)..chunk_key(b"a", u64::MAX);
        assert!(!range.contains(&chunk_key(b"ab", 0)));
        assert!(!range.contains(&chunk_key("a\u{10FFFF}".as_bytes(), 0)));
        assert!(parse_chunk_key(b"short").is_err());
        let mut bad = chunk_key(b"a", 1);
        bad[1] = 0;
        assert!(parse_chunk_key(&bad).is_err());
    }
}
