//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`; not a stable API).

use crate::store::records::{self, Counts, HistoryRecord, ItemRecord};

/// Feeds `bytes` to every on-disk record decoder. Each must return `Ok` or `Err`, never panic,
/// and never allocate beyond its limit.
pub fn decode_records(bytes: &[u8]) {
    let key = b"fuzz";
    let _ = ItemRecord::decode(key, bytes);
    let _ = HistoryRecord::decode(key, bytes);
    let _ = Counts::decode(bytes);
    let _ = records::decode_kinds(bytes);
    let _ = records::decode_dim(key, bytes);
    let _ = records::decode_popular(key, bytes);
    let _ = records::decode_item_pointer(key, bytes);
    let dim = bytes.first().map(|b| *b as usize).unwrap_or(0);
    let _ = records::decode_vector(key, bytes, dim);
    let _ = crate::store::keys::parse_vector(bytes);
    let _ = crate::store::check_header_bytes(bytes);
    let _ = records::decode_sid(key, bytes);
    let _ = records::decode_sid_items(key, bytes);
    let _ = crate::store::keys::parse_tuple(bytes);
    let _ = crate::sid::SidTable::decode(bytes);
}
