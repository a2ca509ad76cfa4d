//! JSON Lines: one [`Item`] or one [`Interaction`] object per line (see `docs/import.md`).

use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use serde::de::DeserializeOwned;

use super::bounded::{open_lines, read_error};
use super::{
    check_events, check_items, check_options, line_error, write_all, ImportOptions, ImportReport,
};
use crate::{Db, Interaction, Item, Result};

/// Parses every non-blank line of `path` as a `T`, returning (values, line numbers).
pub(crate) fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<(Vec<T>, Vec<u64>)> {
    let reader = open_lines(path)?;
    let mut values = Vec::new();
    let mut lines = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let n = i as u64 + 1;
        let line = line.map_err(|e| read_error(path, n, &e))?;
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str(&line).map_err(|e| line_error(path, n, e.to_string()))?;
        values.push(v);
        lines.push(n);
    }
    Ok((values, lines))
}

/// Imports items from a JSONL file: `{"key": ..., "title": ..., "description": ...,
/// "attributes": {...}, "vectors": {"name": [floats]}}` per line. Existing keys are replaced.
pub fn items_jsonl(db: &Db, path: &Path, opts: &ImportOptions<'_>) -> Result<ImportReport> {
    let started = Instant::now();
    check_options(db, opts)?;
    let (items, lines): (Vec<Item>, _) = read_jsonl(path)?;
    check_items(db, path, &items, &lines)?;
    write_all(db, &items, &[], opts, started)
}

/// Reads a JSONL interactions file (the format of [`interactions_jsonl`]) without writing
/// anything, for replaying it later (`convergedb stream`). Errors name the line.
pub fn read_interactions_jsonl(path: &Path) -> Result<Vec<Interaction>> {
    Ok(read_jsonl::<Interaction>(path)?.0)
}

/// Imports interactions from a JSONL file: `{"user": ..., "item": ..., "timestamp": int,
/// "kind": optional string, "weight": optional float}` per line.
pub fn interactions_jsonl(db: &Db, path: &Path, opts: &ImportOptions<'_>) -> Result<ImportReport> {
    let started = Instant::now();
    check_options(db, opts)?;
    let (events, lines): (Vec<Interaction>, _) = read_jsonl(path)?;
    check_events(db, path, &events, &lines, &Default::default())?;
    write_all(db, &[], &events, opts, started)
}
