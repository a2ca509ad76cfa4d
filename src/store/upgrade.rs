//! Upgrading an older on-disk format in place, on open.
//!
//! Format 1 → 2 (chunked histories): the header is set to 2 and `meta["upgrade"]` marks the work
//! as unfinished in one transaction, so an older build refuses the database from then on
//! (`UnsupportedFormat`) instead of misreading it. Each format-1 history record is then rewritten
//! as a head and frozen chunks, a batch of users per transaction; a crash midway leaves the
//! marker and the next open carries on where it stopped (format-2 heads are skipped). The marker
//! goes last. Nothing else changed between the formats: versions, counts, popularity, lists and
//! the refresh queue are untouched, so every cached list stays exactly as current as it was.

use super::header::{encode_header, HEADER_KEY};
use super::history_chunks::chunk_key;
use super::history_record::{
    decode_legacy, encode_chunk, is_legacy, EntryRecord, HeadRecord, HistoryRecord,
};
use super::{keys, Store, TreeId};
use crate::Result;

/// Users converted per transaction.
const BATCH: usize = 256;

/// `meta` key present while an upgrade is unfinished.
pub(crate) const META_UPGRADE: &[u8] = b"upgrade";

/// Starts the 1 → 2 upgrade: header 2, the unfinished marker and the chunk size, at once.
pub(crate) fn begin_v1_to_v2(store: &Store, chunk: usize) -> Result<()> {
    store.transact(&[TreeId::Meta], |tx| {
        tx.insert(TreeId::Meta, HEADER_KEY, encode_header(2))?;
        tx.insert(TreeId::Meta, META_UPGRADE, b"histories 1->2".to_vec())?;
        tx.insert(
            TreeId::Meta,
            keys::META_HISTORY_LAYOUT,
            super::records::encode_history_layout(chunk),
        )?;
        Ok(())
    })?;
    store.db.flush()?;
    Ok(())
}

/// Rewrites every format-1 history record, then clears the marker.
pub(crate) fn finish_v1_to_v2(store: &Store) -> Result<()> {
    let histories = store.tree(TreeId::Histories);
    let mut from: Vec<u8> = Vec::new();
    loop {
        let mut batch = Vec::with_capacity(BATCH);
        for kv in histories.range(from.clone()..) {
            let (k, v) = kv?;
            if is_legacy(&v) {
                batch.push((k.to_vec(), decode_legacy(&k, &v)?));
                if batch.len() == BATCH {
                    break;
                }
            }
        }
        let Some((last, _)) = batch.last() else {
            break;
        };
        from = last.clone();
        from.push(0); // the next key after `last`
        store.transact(&[TreeId::Histories, TreeId::HistoryChunks], |tx| {
            for (user, rec) in &batch {
                let (head, chunks) = chunked(rec, store.history_chunk);
                for (no, entries) in chunks.iter().enumerate() {
                    tx.insert(
                        TreeId::HistoryChunks,
                        &chunk_key(user, no as u64),
                        encode_chunk(entries),
                    )?;
                }
                tx.insert(TreeId::Histories, user, head.encode())?;
            }
            Ok(())
        })?;
    }
    store.tree(TreeId::Meta).remove(META_UPGRADE)?;
    store.db.flush()?;
    Ok(())
}

/// A whole history as a head and chunks numbered from 0.
pub(crate) fn chunked(rec: &HistoryRecord, chunk: usize) -> (HeadRecord, Vec<Vec<EntryRecord>>) {
    let full = rec.entries.len() / chunk;
    let chunks: Vec<Vec<EntryRecord>> = rec.entries[..full * chunk]
        .chunks(chunk)
        .map(<[_]>::to_vec)
        .collect();
    let head = HeadRecord {
        version: rec.version,
        recorded: rec.recorded,
        n: rec.entries.len() as u32,
        first: 0,
        chunks: full as u32,
        skip: 0,
        frozen_ts: chunks.last().map_or(0, |c| c[chunk - 1].timestamp),
        tail: rec.entries[full * chunk..].to_vec(),
    };
    (head, chunks)
}
