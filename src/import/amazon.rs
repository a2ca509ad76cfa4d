//! The LC-Rec / LETTER Amazon format: `<Name>.inter.json` (`{"user": [item, ...]}`, each list in
//! chronological order), optional `<Name>.item.json` (`{"item": {"title": ..., ...}}`), optional
//! `<Name>.index.json` (semantic IDs, read by the tokenization layer, not by this importer).
//!
//! Keys are the JSON keys and item indices as strings. The format carries no timestamps: an
//! interaction's timestamp is its 0-based position in the user's list, which keeps the order.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use super::bounded::{BoundedFile, MAX_JSON_FILE_BYTES};
use super::{
    check_events, check_items, check_options, io_error, line_error, write_all, ImportOptions,
    ImportReport,
};
use crate::{Db, Interaction, Item, Result};

/// An item index: a JSON number or string.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Index {
    Number(u64),
    Text(String),
}

impl Index {
    fn key(&self) -> String {
        match self {
            Index::Number(n) => n.to_string(),
            Index::Text(s) => s.clone(),
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let bounded = BoundedFile::new(file, MAX_JSON_FILE_BYTES);
    serde_json::from_reader(std::io::BufReader::new(bounded))
        .map_err(|e| line_error(path, e.line() as u64, e.to_string()))
}

/// Sorts numeric keys numerically and others after them, so imports are deterministic.
fn natural(a: &str) -> (u8, u64, String) {
    match a.parse::<u64>() {
        Ok(n) => (0, n, String::new()),
        Err(_) => (1, 0, a.to_string()),
    }
}

/// Imports dataset `name` (e.g. `"Instruments"`) from `dir`.
pub fn amazon(db: &Db, dir: &Path, name: &str, opts: &ImportOptions<'_>) -> Result<ImportReport> {
    let started = Instant::now();
    check_options(db, opts)?;
    let inter_path = dir.join(format!("{name}.inter.json"));
    if !inter_path.is_file() {
        return Err(line_error(
            &inter_path,
            0,
            "missing: expected <Name>.inter.json in the folder",
        ));
    }
    let inter: BTreeMap<String, Vec<Index>> = read_json(&inter_path)?;
    let mut users: Vec<(&String, &Vec<Index>)> = inter.iter().collect();
    users.sort_by_key(|(u, _)| natural(u));

    let item_path = dir.join(format!("{name}.item.json"));
    let texts: BTreeMap<String, Value> = if item_path.is_file() {
        read_json(&item_path)?
    } else {
        BTreeMap::new()
    };
    let mut item_keys: BTreeSet<(u8, u64, String)> = BTreeSet::new();
    let mut events = Vec::new();
    for (user, list) in &users {
        for (pos, idx) in list.iter().enumerate() {
            let key = idx.key();
            item_keys.insert((natural(&key).0, natural(&key).1, key.clone()));
            events.push(Interaction::new(user.as_str(), key, pos as i64));
        }
    }
    for key in texts.keys() {
        item_keys.insert((natural(key).0, natural(key).1, key.clone()));
    }
    let items: Vec<Item> = item_keys
        .into_iter()
        .map(|(_, _, key)| item_from_json(&key, texts.get(&key)))
        .collect();
    let item_lines = vec![0u64; items.len()];
    check_items(db, &item_path, &items, &item_lines)?;
    let pending: HashSet<&str> = items.iter().map(|i| i.key.as_str()).collect();
    let lines = vec![0u64; events.len()];
    check_events(db, &inter_path, &events, &lines, &pending)?;

    let mut report = write_all(db, &items, &events, opts, started)?;
    report
        .notes
        .push("timestamps are positions in each user's list (the format has none)".to_string());
    if !item_path.is_file() {
        report
            .notes
            .push(format!("no {name}.item.json: items have keys but no text"));
    }
    if dir.join(format!("{name}.index.json")).is_file() {
        report.notes.push(format!(
            "{name}.index.json (semantic IDs) is not read by this importer: import it as a tokenization"
        ));
    }
    Ok(report)
}

fn item_from_json(key: &str, value: Option<&Value>) -> Item {
    let mut item = Item::new(key);
    let Some(Value::Object(fields)) = value else {
        return item;
    };
    for (field, v) in fields {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            other => other.to_string(),
        };
        match field.as_str() {
            "title" => item.title = text,
            "description" => item.description = text,
            _ => {
                item.attributes.insert(field.clone(), text);
            }
        }
    }
    item
}
