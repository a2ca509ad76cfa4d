//! Appending to a chunked history inside a write transaction.
//!
//! The common case, entries no older than the newest frozen one, rewrites the head only (its
//! tail is shorter than one chunk) and, once every `chunk` entries, writes one new chunk: O(1)
//! bytes whatever the history's length. At the cap the oldest entries leave by advancing the
//! head's `skip` (one read of the oldest chunk, no rewrite) and dropping whole chunks. An entry
//! older than the newest frozen one (out-of-order arrival) rewrites the chunks from the first one
//! it lands in: correct, and as cheap as the lateness of the entry allows.

use std::collections::BTreeMap;

use super::history_chunks::chunk_key;
use super::history_record::{encode_chunk, parse_chunk, EntryRecord, HeadRecord, HistoryView};
use super::{TreeId, Tx, TxResult};

/// What an append did, for the counters and popularity.
pub(crate) struct Appended {
    pub version: u64,
    pub new_user: bool,
    /// Item ids of the entries that left the history (the cap), one per entry.
    pub evicted: Vec<u64>,
}

/// Chunks read or written by one append: `Some` is the chunk's (new) content, `None` a delete.
struct Chunks<'t, 'a> {
    tx: &'t Tx<'a>,
    user: &'t [u8],
    chunk: usize,
    read: BTreeMap<u64, Vec<EntryRecord>>,
    writes: BTreeMap<u64, Option<Vec<EntryRecord>>>,
}

impl Chunks<'_, '_> {
    fn get(&mut self, no: u64) -> TxResult<Vec<EntryRecord>> {
        match self.writes.get(&no) {
            Some(Some(c)) => return Ok(c.clone()),
            Some(None) => {
                return Err(crate::Error::InvalidArgument(format!(
                    "internal error: history chunk {no} read after its removal"
                ))
                .into())
            }
            None => {}
        }
        if let Some(c) = self.read.get(&no) {
            return Ok(c.clone());
        }
        let key = chunk_key(self.user, no);
        let Some(bytes) = self.tx.get(TreeId::HistoryChunks, &key)? else {
            return Err(crate::Error::corruption(
                "histories",
                self.user,
                format!("the head names history chunk {no}, which is missing"),
            )
            .into());
        };
        let entries = parse_chunk(&key, &bytes, self.chunk)?.entries();
        self.read.insert(no, entries.clone());
        Ok(entries)
    }

    fn put(&mut self, no: u64, entries: Vec<EntryRecord>) {
        self.writes.insert(no, Some(entries));
    }

    fn delete(&mut self, no: u64) {
        self.writes.insert(no, None);
    }

    fn flush(self) -> TxResult<()> {
        for (no, op) in self.writes {
            let key = chunk_key(self.user, no);
            match op {
                Some(entries) => {
                    self.tx
                        .insert(TreeId::HistoryChunks, &key, encode_chunk(&entries))?
                }
                None => self.tx.remove(TreeId::HistoryChunks, &key)?,
            }
        }
        Ok(())
    }
}

/// Stable merge of two timestamp-sorted runs: on equal timestamps `old` comes first (it arrived
/// first).
fn merge(old: Vec<EntryRecord>, new: &[EntryRecord]) -> Vec<EntryRecord> {
    let mut out = Vec::with_capacity(old.len() + new.len());
    let mut new = new.iter().peekable();
    for e in old {
        while let Some(n) = new.next_if(|n| n.timestamp < e.timestamp) {
            out.push(*n);
        }
        out.push(e);
    }
    out.extend(new);
    out
}

/// Appends `new` (in arrival order) to `user`'s history, keeps the newest `limit` entries and
/// bumps the history version. Writes the head and the chunks that changed.
pub(crate) fn append(
    tx: &Tx<'_>,
    user: &[u8],
    new: &[EntryRecord],
    limit: usize,
    chunk: usize,
) -> TxResult<Appended> {
    let (mut head, new_user) = match tx.get(TreeId::Histories, user)? {
        Some(bytes) => {
            let view = HistoryView::parse(user, &bytes)?;
            view.check_layout(user, chunk)?;
            (HeadRecord::of(&view), false)
        }
        None => (HeadRecord::default(), true),
    };
    let mut new = new.to_vec();
    new.sort_by_key(|e| e.timestamp); // stable: ties keep arrival order
    let mut chunks = Chunks {
        tx,
        user,
        chunk,
        read: BTreeMap::new(),
        writes: BTreeMap::new(),
    };
    let mut tail = std::mem::take(&mut head.tail);
    let oldest_new = new.first().map_or(i64::MAX, |e| e.timestamp);
    if head.chunks > 0 && oldest_new < head.frozen_ts {
        // Out of order: find the first chunk an entry lands in and rewrite from there.
        let last = head.first + head.chunks as u64 - 1;
        let mut from = last;
        while from > head.first && chunks.get(from)?[0].timestamp > oldest_new {
            from -= 1;
        }
        let mut old = Vec::new();
        for no in from..=last {
            let c = chunks.get(no)?;
            let keep = if no == head.first {
                head.skip as usize
            } else {
                0
            };
            old.extend_from_slice(&c[keep..]);
            chunks.delete(no);
        }
        old.extend(tail);
        let merged = merge(old, &new);
        if from == head.first {
            head.skip = 0;
        }
        head.chunks = (from - head.first) as u32;
        tail = merged;
        freeze(&mut head, &mut tail, &mut chunks);
    } else {
        tail = merge(tail, &new);
    }
    // The cap: the oldest entries leave first, from the oldest chunk, then from the tail.
    let mut n = head.chunks as usize * chunk - head.skip as usize + tail.len();
    let mut evicted = Vec::new();
    while n > limit {
        let excess = n - limit;
        if head.chunks > 0 {
            let c = chunks.get(head.first)?;
            let from = head.skip as usize;
            let take = excess.min(chunk - from);
            evicted.extend(c[from..from + take].iter().map(|e| e.item_id));
            head.skip += take as u32;
            n -= take;
            if head.skip as usize == chunk {
                chunks.delete(head.first);
                head.first += 1;
                head.chunks -= 1;
                head.skip = 0;
            }
        } else {
            evicted.extend(tail.drain(..excess).map(|e| e.item_id));
            n -= excess;
        }
    }
    freeze(&mut head, &mut tail, &mut chunks);
    if head.chunks == 0 {
        head.frozen_ts = 0;
    }
    head.n = n as u32;
    head.tail = tail;
    head.recorded += new.len() as u64;
    head.version += 1;
    chunks.flush()?;
    tx.insert(TreeId::Histories, user, head.encode())?;
    Ok(Appended {
        version: head.version,
        new_user,
        evicted,
    })
}

/// Whether appending `count` entries, the oldest at `oldest_ts`, to the history whose head is
/// `head` can read or write a chunk (a freeze, the cap, a late arrival). Conservative: a head
/// that does not parse says yes, and the transaction then reports it. Lets the write path leave
/// the chunk tree out of most transactions (sled's cost grows with the trees in one).
pub(crate) fn may_touch_chunks(
    head: Option<&[u8]>,
    count: usize,
    oldest_ts: i64,
    limit: usize,
    chunk: usize,
) -> bool {
    let Some(bytes) = head else {
        return count >= chunk;
    };
    let Ok(view) = HistoryView::parse(b"", bytes) else {
        return true;
    };
    view.tail().len() + count >= chunk
        || (view.chunks() > 0 && (oldest_ts < view.frozen_ts() || view.len() + count > limit))
}

/// Moves full chunks from the front of `tail` into new chunks after the newest one. (With a
/// history limit below the chunk size the capped tail never fills: no chunk is ever written.)
fn freeze(head: &mut HeadRecord, tail: &mut Vec<EntryRecord>, chunks: &mut Chunks<'_, '_>) {
    let chunk = chunks.chunk;
    while tail.len() >= chunk {
        let rest = tail.split_off(chunk);
        let full = std::mem::replace(tail, rest);
        head.frozen_ts = full[chunk - 1].timestamp;
        chunks.put(head.first + head.chunks as u64, full);
        head.chunks += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::history_chunks::StoredHistory;
    use proptest::prelude::*;

    fn entry(item_id: u64, timestamp: i64) -> EntryRecord {
        EntryRecord {
            item_id,
            timestamp,
            kind: 0,
            weight: 1.0,
        }
    }

    /// The reference: push, stable sort by timestamp, drop the oldest beyond the limit.
    fn reference(model: &mut Vec<EntryRecord>, batch: &[EntryRecord], limit: usize) -> Vec<u64> {
        model.extend_from_slice(batch);
        model.sort_by_key(|e| e.timestamp);
        let evict = model.len().saturating_sub(limit);
        model.drain(..evict).map(|e| e.item_id).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Random batches (late arrivals included) against the reference, for small chunk sizes
        /// and limits around them: same entries in the same order, same evictions, a head whose
        /// counts match its chunks, and no chunk left behind.
        #[test]
        fn appends_match_the_reference(
            chunk in 1usize..6,
            limit in 1usize..14,
            batches in proptest::collection::vec(proptest::collection::vec(0i64..40, 1..7), 1..30),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let config = crate::Config::new(dir.path()).history_chunk_entries(chunk);
            let store = crate::store::open_store(&config).unwrap();
            let mut model = Vec::new();
            let mut next_item = 0u64;
            for (v, times) in batches.iter().enumerate() {
                let batch: Vec<EntryRecord> = times.iter().map(|&t| { next_item += 1; entry(next_item, t) }).collect();
                let out = store
                    .transact(&[TreeId::Histories, TreeId::HistoryChunks], |tx| {
                        append(tx, b"u", &batch, limit, chunk)
                    })
                    .unwrap();
                let mut evicted = reference(&mut model, &batch, limit);
                let mut got = out.evicted.clone();
                evicted.sort_unstable();
                got.sort_unstable();
                prop_assert_eq!(got, evicted);
                prop_assert_eq!(out.version, v as u64 + 1);
                prop_assert_eq!(out.new_user, v == 0);
                let stored = StoredHistory::load(&store, b"u").unwrap().unwrap();
                prop_assert_eq!(stored.entries(), model.clone());
                prop_assert_eq!(stored.len(), model.len());
                for (i, e) in model.iter().enumerate() {
                    prop_assert_eq!(stored.entry(i), *e);
                    prop_assert!(stored.contains(e.item_id));
                }
                if let Some((stored_ts, last)) = stored.frozen_ts() {
                    prop_assert_eq!(stored_ts, last);
                }
                let view_bytes = store.get(TreeId::Histories, b"u").unwrap().unwrap();
                let view = HistoryView::parse(b"u", &view_bytes).unwrap();
                prop_assert_eq!(
                    store.tree(TreeId::HistoryChunks).len(),
                    view.chunks() as usize,
                    "chunks outside the head's range"
                );
            }
        }
    }

    #[test]
    fn an_append_at_the_cap_writes_the_head_and_at_most_one_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::Config::new(dir.path()).history_chunk_entries(32);
        let store = crate::store::open_store(&config).unwrap();
        let trees = [TreeId::Histories, TreeId::HistoryChunks];
        let all: Vec<EntryRecord> = (0..1000).map(|i| entry(i, i as i64)).collect();
        store
            .transact(&trees, |tx| append(tx, b"u", &all, 1000, 32))
            .unwrap();
        for i in 1000..1100u64 {
            let head_before = store.get(TreeId::Histories, b"u").unwrap().unwrap().len();
            store
                .transact(&trees, |tx| {
                    append(tx, b"u", &[entry(i, i as i64)], 1000, 32)
                })
                .unwrap();
            let head_after = store.get(TreeId::Histories, b"u").unwrap().unwrap().len();
            // The head holds fewer than 32 entries, whatever the history's length.
            assert!(head_before < 49 + 32 * 24 && head_after < 49 + 32 * 24);
        }
        let stored = StoredHistory::load(&store, b"u").unwrap().unwrap();
        assert_eq!(stored.len(), 1000);
        assert_eq!(stored.entry(0).item_id, 100);
        assert_eq!(stored.entry(999).item_id, 1099);
        // 1000 retained of 32 each: 31 or 32 chunks, never the 34 appended so far.
        assert!(store.tree(TreeId::HistoryChunks).len() <= 32);
    }
}
