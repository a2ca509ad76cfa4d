//! Interactions: record one, record a JSONL batch, read a history as JSON.

use std::ffi::c_char;

use super::call::{guard, json_c_string, non_null, opt_str_arg, str_arg};
use super::db::{convergedb_db, with_db};
use super::items::parse_jsonl;
use super::status::convergedb_status;
use crate::Interaction;

/// Records one interaction of `user` with `item` at `timestamp` (the caller's unit, seconds
/// since the epoch by convention), with an optional `kind` (NULL for none, at most 64 bytes) and
/// a finite `weight` (1.0 is the usual value). The item must exist and be live
/// (`CONVERGEDB_UNKNOWN_ITEM`, `CONVERGEDB_DELETED_ITEM`); a NaN weight gives
/// `CONVERGEDB_INVALID_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle; every string NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn convergedb_interaction_record(
    db: *const convergedb_db,
    user: *const c_char,
    item: *const c_char,
    timestamp: i64,
    kind: *const c_char,
    weight: f32,
) -> convergedb_status {
    guard(|| {
        // SAFETY: forwarded contract: each string is NULL or NUL-terminated.
        let user = unsafe { str_arg(user, "user") }?;
        // SAFETY: as above.
        let item = unsafe { str_arg(item, "item") }?;
        // SAFETY: as above.
        let kind = unsafe { opt_str_arg(kind, "kind") }?;
        let mut event = Interaction::new(user, item, timestamp).weight(weight);
        event.kind = kind.map(str::to_string);
        // SAFETY: forwarded contract on `db`.
        unsafe { with_db(db, |d| Ok(d.record_interactions(&[event])?)) }
    })
}

/// Records a batch of interactions in one atomic write: all or, on any error, none.
///
/// `jsonl` holds one object per line, the schema of the JSONL importer: `{"user": "alice",
/// "item": "m1", "timestamp": 1700000000, "kind": "view", "weight": 1.0}` (`kind` and `weight`
/// optional). Blank lines are skipped; a line that does not parse gives `CONVERGEDB_IMPORT`
/// naming the line. Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle; `jsonl` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn convergedb_interactions_record_jsonl(
    db: *const convergedb_db,
    jsonl: *const c_char,
) -> convergedb_status {
    guard(|| {
        // The handle first: a NULL handle is NULL_ARGUMENT whatever the text holds.
        non_null(db, "db")?;
        // SAFETY: forwarded contract: `jsonl` is NULL or NUL-terminated.
        let text = unsafe { str_arg(jsonl, "jsonl") }?;
        let events: Vec<Interaction> = parse_jsonl(text)?;
        // SAFETY: forwarded contract on `db`.
        unsafe { with_db(db, |d| Ok(d.record_interactions(&events)?)) }
    })
}

/// The history of `user`, oldest first, as JSON: `{"user", "version", "recorded", "entries":
/// [{"item", "item_id", "live", "timestamp", "kind", "weight"}]}`. `CONVERGEDB_UNKNOWN_USER`
/// when no interaction was recorded for the user. On OK the caller owns `*out_json` and frees it
/// with `convergedb_string_free`. Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle; `user` NULL or NUL-terminated; `out_json` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn convergedb_history_json(
    db: *const convergedb_db,
    user: *const c_char,
    out_json: *mut *mut c_char,
) -> convergedb_status {
    guard(|| {
        // SAFETY: forwarded contract: `user` is NULL or NUL-terminated.
        let user = unsafe { str_arg(user, "user") }?;
        non_null(out_json, "out_json")?;
        // SAFETY: forwarded contract on `db`.
        let s = unsafe { with_db(db, |d| json_c_string(&d.history(user)?)) }?;
        // SAFETY: `out_json` is non-NULL and writable by contract.
        unsafe { out_json.write(s) };
        Ok(())
    })
}
