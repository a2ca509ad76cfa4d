//! CSV interactions: a header row naming `user`, `item`, `timestamp` and optionally `kind`,
//! `weight`, in any order (each at most once); other columns are ignored. Lines are bounded
//! (`bounded.rs`).

use std::path::Path;
use std::time::Instant;

use super::bounded::{read_error, BoundedLines};
use super::{
    check_events, check_options, io_error, line_error, write_all, ImportOptions, ImportReport,
};
use crate::{Db, Error, Interaction, Result};

/// The columns the importer reads; each may appear once.
const COLUMNS: [&str; 5] = ["user", "item", "timestamp", "kind", "weight"];

fn csv_error(path: &Path, line: u64, e: csv::Error) -> Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => read_error(path, line, &io),
        other => line_error(path, line, format!("{other:?}")),
    }
}

/// Imports interactions from a CSV file with a header row.
pub fn interactions_csv(db: &Db, path: &Path, opts: &ImportOptions<'_>) -> Result<ImportReport> {
    let started = Instant::now();
    check_options(db, opts)?;
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(BoundedLines::new(file));
    let headers = reader.headers().map_err(|e| csv_error(path, 1, e))?.clone();
    for name in COLUMNS {
        let at: Vec<usize> = headers
            .iter()
            .enumerate()
            .filter(|(_, h)| h.eq_ignore_ascii_case(name))
            .map(|(i, _)| i + 1)
            .collect();
        if at.len() > 1 {
            return Err(line_error(
                path,
                1,
                format!(
                    "column {name:?} appears {} times in the header (columns {at:?}): keep one",
                    at.len()
                ),
            ));
        }
    }
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(user), Some(item), Some(ts)) = (col("user"), col("item"), col("timestamp")) else {
        return Err(line_error(
            path,
            1,
            format!(
                "the header must name the columns user, item and timestamp; found {:?}",
                headers.iter().collect::<Vec<_>>()
            ),
        ));
    };
    let (kind, weight) = (col("kind"), col("weight"));
    let mut events = Vec::new();
    let mut lines = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            csv_error(path, line, e)
        })?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let field = |i: usize| record.get(i).unwrap_or("");
        let timestamp = field(ts).parse::<i64>().map_err(|_| {
            line_error(
                path,
                line,
                format!("timestamp {:?} is not an integer", field(ts)),
            )
        })?;
        let mut event = Interaction::new(field(user), field(item), timestamp);
        if let Some(k) = kind.map(field).filter(|k| !k.is_empty()) {
            event.kind = Some(k.to_string());
        }
        if let Some(w) = weight.map(field).filter(|w| !w.is_empty()) {
            event.weight = w
                .parse::<f32>()
                .map_err(|_| line_error(path, line, format!("weight {w:?} is not a number")))?;
        }
        events.push(event);
        lines.push(line);
    }
    check_events(db, path, &events, &lines, &Default::default())?;
    write_all(db, &[], &events, opts, started)
}
