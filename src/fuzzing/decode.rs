//! Arbitrary bytes into every on-disk record decoder and the tokenization-file parser.

use crate::store::records::{self, Counts, HeadRecord, ItemRecord};

/// Feeds `bytes` to every on-disk record decoder. Each must return `Ok` or `Err`, never panic,
/// and never allocate beyond its limit.
pub fn decode_records(bytes: &[u8]) {
    let key = b"fuzz";
    let _ = ItemRecord::decode(key, bytes);
    let _ = HeadRecord::decode(key, bytes);
    // The zero-copy views the read paths use: parse, then touch every entry.
    if let Ok(view) = crate::store::records::HistoryView::parse(key, bytes) {
        let _ = (view.version(), view.recorded(), view.tail().contains(1));
        let _ = view.check_layout(key, 4);
        for i in 0..view.tail().len() {
            let _ = view.tail().entry(i);
        }
    }
    if let Ok(chunk) = records::parse_chunk(key, bytes, 4) {
        let _ = (chunk.contains(1), chunk.entries());
    }
    let _ = records::decode_legacy(key, bytes);
    let _ = crate::store::parse_chunk_key(bytes);
    let _ = crate::store::keys::parse_item_id("items", bytes);
    let _ = crate::store::keys::parse_text("histories", bytes);
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
    // The cached list (read zero-copy by `recommend`) and the refresh queue record.
    if let Ok(view) = crate::store::TopkView::parse(key, bytes) {
        let _ = (
            view.history_version(),
            view.sid_version(),
            view.computed_at_ms(),
        );
        let _ = view.model_id();
        for i in 0..view.len() {
            let _ = view.item(i);
        }
    }
    let _ = crate::store::StaleRecord::decode(key, bytes);
    let _ = records::decode_model_id(bytes);
}

/// Feeds `bytes` to the ANN dump decoder (data and links files, the checksum gate bypassed),
/// and searches a graph that decodes: `Ok` or `Err`, never a panic.
pub fn decode_ann_dump(bytes: &[u8]) {
    crate::ann::codec::fuzz_decode(bytes);
}

/// Feeds `bytes` to the model-bundle manifest parser and its validation (what `attach_model`
/// does with `manifest.json` before touching any other file): `Ok` or `Err`, never a panic.
pub fn decode_bundle_manifest(bytes: &[u8]) {
    if let Ok(m) = serde_json::from_slice::<crate::model::manifest::Manifest>(bytes) {
        if m.validate().is_ok() {
            let _ = m.template();
        }
    }
}

/// Feeds `bytes` to the tokenization-file parser (a convergedb tokenization file or a LETTER
/// `*.index.json`): `Ok` or `Err`, never a panic.
pub fn decode_tokenization_file(bytes: &[u8]) {
    let path = std::path::Path::new("<fuzz>");
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = crate::sid::file::parse(path, text);
    }
}
