//! Items: put one item, put a JSONL batch, get one as JSON, delete one.

use std::collections::BTreeMap;
use std::ffi::c_char;

use serde::de::DeserializeOwned;

use super::call::{guard, json_c_string, non_null, opt_str_arg, str_arg};
use super::db::{convergedb_db, with_db};
use super::status::{convergedb_status, Failure, FfiResult};
use crate::{Error, Item};

/// Parses a JSONL text: one `T` per non-blank line. A bad line is `Error::Import` naming it.
pub(crate) fn parse_jsonl<T: DeserializeOwned>(text: &str) -> FfiResult<Vec<T>> {
    let mut values = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str(line).map_err(|e| Error::Import {
            path: "<jsonl argument>".into(),
            line: i as u64 + 1,
            reason: e.to_string(),
        })?;
        values.push(v);
    }
    Ok(values)
}

fn json_arg<T: DeserializeOwned + Default>(text: Option<&str>, name: &str) -> FfiResult<T> {
    match text {
        None => Ok(T::default()),
        Some(t) => serde_json::from_str(t)
            .map_err(|e| Failure::invalid(format!("argument `{name}` is not valid JSON: {e}"))),
    }
}

/// Puts (inserts or replaces) one item in its own atomic write.
///
/// `key`, `title` and `description` are UTF-8 strings (`""` for no title or description).
/// `attributes_json` is NULL or a JSON object of strings, e.g. `{"year": "1995"}`;
/// `vectors_json` is NULL or a JSON object of float arrays, e.g. `{"text": [0.1, 0.3]}`. Bad
/// JSON gives `CONVERGEDB_INVALID_ARGUMENT`; the library's checks give `CONVERGEDB_EMPTY_KEY`,
/// `CONVERGEDB_TOO_LONG`, `CONVERGEDB_VECTOR_DIMENSION`, `CONVERGEDB_INVALID_VECTOR`. Strings are
/// only read during the call. Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle; every string NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn convergedb_item_put(
    db: *const convergedb_db,
    key: *const c_char,
    title: *const c_char,
    description: *const c_char,
    attributes_json: *const c_char,
    vectors_json: *const c_char,
) -> convergedb_status {
    guard(|| {
        // SAFETY: forwarded contract: each string is NULL or NUL-terminated.
        let key = unsafe { str_arg(key, "key") }?;
        // SAFETY: as above.
        let title = unsafe { str_arg(title, "title") }?;
        // SAFETY: as above.
        let description = unsafe { str_arg(description, "description") }?;
        // SAFETY: as above.
        let attributes = unsafe { opt_str_arg(attributes_json, "attributes_json") }?;
        // SAFETY: as above.
        let vectors = unsafe { opt_str_arg(vectors_json, "vectors_json") }?;
        let item = Item {
            key: key.to_string(),
            title: title.to_string(),
            description: description.to_string(),
            attributes: json_arg::<BTreeMap<String, String>>(attributes, "attributes_json")?,
            vectors: json_arg::<BTreeMap<String, Vec<f32>>>(vectors, "vectors_json")?,
        };
        // SAFETY: forwarded contract on `db`.
        unsafe { with_db(db, |d| Ok(d.put_items(&[item]).map(drop)?)) }
    })
}

/// Puts a batch of items in one atomic write: all are stored, or on any error none.
///
/// `jsonl` holds one item object per line, the schema of the JSONL importer
/// (`docs/import.md`): `{"key": "m1", "title": "...", "description": "...", "attributes":
/// {...}, "vectors": {"name": [floats]}}`, only `key` required, unknown fields rejected. Blank
/// lines are skipped. A line that does not parse gives `CONVERGEDB_IMPORT` (the message names
/// the line); a key given twice gives `CONVERGEDB_DUPLICATE_IN_BATCH`. Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle; `jsonl` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn convergedb_items_put_jsonl(
    db: *const convergedb_db,
    jsonl: *const c_char,
) -> convergedb_status {
    guard(|| {
        // The handle first: a NULL handle is NULL_ARGUMENT whatever the text holds.
        non_null(db, "db")?;
        // SAFETY: forwarded contract: `jsonl` is NULL or NUL-terminated.
        let text = unsafe { str_arg(jsonl, "jsonl") }?;
        let items: Vec<Item> = parse_jsonl(text)?;
        // SAFETY: forwarded contract on `db`.
        unsafe { with_db(db, |d| Ok(d.put_items(&items).map(drop)?)) }
    })
}

/// The item `key` as a JSON object of the importer's schema (`key`, `title`, `description`,
/// `attributes`, `vectors`). `CONVERGEDB_UNKNOWN_ITEM` when the catalog holds no live item of
/// that key. On OK the caller owns `*out_json` and frees it with `convergedb_string_free`.
/// Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle; `key` NULL or NUL-terminated; `out_json` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn convergedb_item_get_json(
    db: *const convergedb_db,
    key: *const c_char,
    out_json: *mut *mut c_char,
) -> convergedb_status {
    guard(|| {
        // SAFETY: forwarded contract: `key` is NULL or NUL-terminated.
        let key = unsafe { str_arg(key, "key") }?;
        non_null(out_json, "out_json")?;
        // SAFETY: forwarded contract on `db`.
        let s = unsafe {
            with_db(db, |d| match d.get_item(key)? {
                Some(item) => json_c_string(&item),
                None => Err(Error::UnknownItem {
                    key: key.to_string(),
                }
                .into()),
            })
        }?;
        // SAFETY: `out_json` is non-NULL and writable by contract.
        unsafe { out_json.write(s) };
        Ok(())
    })
}

/// Deletes the item `key` (its id and the histories naming it are kept; recommendations stop
/// returning it). `CONVERGEDB_UNKNOWN_ITEM` if the catalog never held it,
/// `CONVERGEDB_DELETED_ITEM` if it is already deleted. Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle; `key` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn convergedb_item_delete(
    db: *const convergedb_db,
    key: *const c_char,
) -> convergedb_status {
    guard(|| {
        // SAFETY: forwarded contract: `key` is NULL or NUL-terminated.
        let key = unsafe { str_arg(key, "key") }?;
        // SAFETY: forwarded contract on `db`.
        unsafe { with_db(db, |d| Ok(d.delete_items(&[key]).map(drop)?)) }
    })
}
