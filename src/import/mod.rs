//! Importers: JSONL items, JSONL/CSV interactions, MovieLens-100K (RecBole atomic files) and the
//! LC-Rec/LETTER Amazon JSON format. File formats are documented in `docs/import.md`.
//!
//! Every importer checks its options, then parses and validates the whole input first, every
//! limit included (errors name the file and line, and nothing is written), then writes in
//! batches; each batch is one atomic transaction. If a batch fails anyway (a concurrent writer
//! deleted an item or added kinds, a storage error such as a full disk), the batches before it
//! stay committed and the error says how many records were written. Lines are read with a
//! bound (`bounded.rs`: 16 MiB a line, 1 GiB a whole-document JSON file).

mod amazon;
mod bounded;
mod jsonl;
mod movielens;
mod tabular;

pub use amazon::amazon;
pub use bounded::{MAX_JSON_FILE_BYTES, MAX_LINE_BYTES};
pub use jsonl::{interactions_jsonl, items_jsonl, read_interactions_jsonl};
pub use movielens::movielens;
pub use tabular::interactions_csv;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::{Db, Error, Interaction, Item, Result};

/// Progress callback: (records written so far, records in total).
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// How to run an import.
pub struct ImportOptions<'a> {
    /// Records per atomic batch (default 100,000; between 1 and the database's `max_batch`,
    /// else the import fails before reading anything).
    pub batch_size: usize,
    /// Called after each batch.
    pub progress: Option<Progress<'a>>,
    /// Hold out the last `n` interactions of each user in this import (by timestamp, ties in
    /// file order: the order histories keep) instead of recording them; they are returned in
    /// [`ImportReport::held_out`], in timestamp order. The leave-one-out split of the training
    /// pipeline is `2` (validation and test item). Default 0.
    pub hold_out_last: usize,
}

impl Default for ImportOptions<'_> {
    fn default() -> Self {
        ImportOptions {
            batch_size: 100_000,
            progress: None,
            hold_out_last: 0,
        }
    }
}

/// What an import wrote.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ImportReport {
    /// Items put.
    pub items: u64,
    /// Interactions recorded.
    pub interactions: u64,
    /// Wall time of the parse and the writes.
    #[serde(serialize_with = "secs")]
    pub elapsed: Duration,
    /// Notes for the user (files skipped, conventions applied).
    pub notes: Vec<String>,
    /// The interactions held out by [`ImportOptions::hold_out_last`], in timestamp order (ties
    /// in file order); not serialised.
    #[serde(skip)]
    pub held_out: Vec<Interaction>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn line_error(path: &Path, line: u64, reason: impl Into<String>) -> Error {
    Error::Import {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

/// Checks that every item an interaction names exists and is live, so a bad file fails with its
/// line number before anything is written. `lines[i]` is the source line of `events[i]`;
/// `pending` holds keys of items the same import writes first.
fn check_items_exist(
    db: &Db,
    path: &Path,
    events: &[Interaction],
    lines: &[u64],
    pending: &HashSet<&str>,
) -> Result<()> {
    let mut known: HashSet<&str> = pending.clone();
    for (e, line) in events.iter().zip(lines) {
        if known.contains(e.item.as_str()) {
            continue;
        }
        match db.item_id(&e.item) {
            Ok(Some(_)) => {
                known.insert(e.item.as_str());
            }
            Ok(None) => {
                return Err(line_error(
                    path,
                    *line,
                    format!(
                        "unknown or deleted item {:?}: import the items first",
                        e.item
                    ),
                ))
            }
            Err(err) => return Err(line_error(path, *line, err.to_string())),
        }
    }
    Ok(())
}

/// Writes items then interactions in batches, reporting progress over both.
pub(crate) fn write_all(
    db: &Db,
    items: &[Item],
    events: &[Interaction],
    opts: &ImportOptions<'_>,
    started: Instant,
) -> Result<ImportReport> {
    let batch = opts.batch_size;
    let kept;
    let (events, held_out) = if opts.hold_out_last == 0 {
        (events, Vec::new())
    } else {
        let (k, held) = hold_out(events, opts.hold_out_last);
        kept = k;
        (&kept[..], held)
    };
    let total = (items.len() + events.len()) as u64;
    let mut done = 0u64;
    let report_progress = |done: u64| {
        if let Some(p) = opts.progress {
            p(done, total);
        }
    };
    let partial = |e: Error, done: u64| Error::ImportPartial {
        committed: done,
        total,
        source: Box::new(e),
    };
    for chunk in items.chunks(batch) {
        db.put_items(chunk).map_err(|e| partial(e, done))?;
        done += chunk.len() as u64;
        report_progress(done);
    }
    for chunk in events.chunks(batch) {
        db.record_interactions(chunk)
            .map_err(|e| partial(e, done))?;
        done += chunk.len() as u64;
        report_progress(done);
    }
    Ok(ImportReport {
        items: items.len() as u64,
        interactions: events.len() as u64,
        elapsed: started.elapsed(),
        notes: Vec::new(),
        held_out,
    })
}

/// Splits off the last `n` events of each user (history order: timestamp, ties in input
/// order); both parts keep input order, the held-out part sorted by timestamp (stable).
fn hold_out(events: &[Interaction], n: usize) -> (Vec<Interaction>, Vec<Interaction>) {
    let mut by_user: std::collections::HashMap<&str, Vec<usize>> = Default::default();
    for (i, e) in events.iter().enumerate() {
        by_user.entry(e.user.as_str()).or_default().push(i);
    }
    let mut held = vec![false; events.len()];
    for idx in by_user.values_mut() {
        idx.sort_by_key(|&i| events[i].timestamp);
        for &i in idx.iter().rev().take(n) {
            held[i] = true;
        }
    }
    let (mut out, mut kept) = (Vec::new(), Vec::new());
    for (e, h) in events.iter().zip(held) {
        if h {
            out.push(e.clone())
        } else {
            kept.push(e.clone())
        }
    }
    out.sort_by_key(|e| e.timestamp);
    (kept, out)
}

/// Validates items one by one so an error names its line; also rejects a key given twice and a
/// vector whose dimension differs from the database's or from an earlier line's.
pub(crate) fn check_items(db: &Db, path: &Path, items: &[Item], lines: &[u64]) -> Result<()> {
    let mut first_line = std::collections::HashMap::new();
    let mut dims = db.vector_dims();
    for (item, line) in items.iter().zip(lines) {
        crate::db::validate_items(std::slice::from_ref(item), db.limits())
            .map_err(|e| line_error(path, *line, e.to_string()))?;
        for (name, values) in &item.vectors {
            let expected = *dims.entry(name.clone()).or_insert(values.len());
            if expected != values.len() {
                let e = Error::VectorDimension {
                    item: item.key.clone(),
                    name: name.clone(),
                    expected,
                    got: values.len(),
                };
                return Err(line_error(path, *line, e.to_string()));
            }
        }
        if let Some(first) = first_line.insert(item.key.as_str(), *line) {
            return Err(line_error(
                path,
                *line,
                format!("item {:?} appears again (first at line {first})", item.key),
            ));
        }
    }
    Ok(())
}

/// Refuses options an import cannot run with, before anything is read.
pub(crate) fn check_options(db: &Db, opts: &ImportOptions<'_>) -> Result<()> {
    let max = db.limits().max_batch;
    if opts.batch_size == 0 || opts.batch_size > max {
        return Err(Error::InvalidArgument(format!(
            "batch size {} is out of range: give between 1 and {max} records per batch",
            opts.batch_size
        )));
    }
    Ok(())
}

/// Validates interactions one by one so an error names its line, including the limit on
/// distinct kinds (the ones stored plus the new ones of this import), so that no limit is
/// found only while writing.
pub(crate) fn check_events(
    db: &Db,
    path: &Path,
    events: &[Interaction],
    lines: &[u64],
    pending: &HashSet<&str>,
) -> Result<()> {
    let (stored, max_kinds) = db.kinds_and_limit();
    let mut kinds: HashSet<String> = stored.into_iter().collect();
    for (event, line) in events.iter().zip(lines) {
        crate::db::validate_interactions(std::slice::from_ref(event), db.limits())
            .map_err(|e| line_error(path, *line, e.to_string()))?;
        if let Some(kind) = &event.kind {
            if !kinds.contains(kind.as_str()) {
                if kinds.len() >= max_kinds {
                    return Err(line_error(
                        path,
                        *line,
                        format!(
                            "kind {kind:?} would be distinct kind number {}, over the limit of \
                             {max_kinds} distinct kinds per database; nothing was written",
                            kinds.len() + 1
                        ),
                    ));
                }
                kinds.insert(kind.clone());
            }
        }
    }
    check_items_exist(db, path, events, lines, pending)
}
