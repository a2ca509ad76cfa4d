//! Semantic IDs: tokenize, an item's codes, `allowed_next`, import and export.

use std::ffi::c_char;
use std::path::Path;

use super::call::{guard, non_null, str_arg};
use super::db::{convergedb_db, with_db};
use super::status::{convergedb_status, Failure, FfiResult};
use crate::{Error, TokenizeOptions};

/// Copies `codes` to `out` (capacity `cap`) and writes the length to `out_len`; when `cap` is
/// too small writes only the needed length and fails with `CONVERGEDB_BUFFER_TOO_SMALL`.
///
/// # Safety
/// `out_len` must be non-NULL and writable; `out` NULL or writable for `cap` values.
unsafe fn copy_codes(codes: &[u16], out: *mut u16, cap: usize, out_len: *mut usize) -> FfiResult {
    if codes.len() > cap {
        // SAFETY: `out_len` is non-NULL and writable by contract.
        unsafe { out_len.write(codes.len()) };
        return Err(Failure::new(
            convergedb_status::CONVERGEDB_BUFFER_TOO_SMALL,
            format!("the buffer holds {cap} codes, {} are needed", codes.len()),
        ));
    }
    if !codes.is_empty() {
        non_null(out, "out")?;
        // SAFETY: `out` is non-NULL and writable for `cap >= codes.len()` values by contract;
        // the source is a distinct Rust allocation.
        unsafe { std::ptr::copy_nonoverlapping(codes.as_ptr(), out, codes.len()) };
    }
    // SAFETY: `out_len` is non-NULL and writable by contract.
    unsafe { out_len.write(codes.len()) };
    Ok(())
}

/// Trains a new tokenization on the stored vector named `vector` of every live item (residual
/// k-means with `levels` levels of `codes` codes each, 20 iterations, balanced last level,
/// deterministic for `seed`), assigns codes to every item, and makes it the current table. Items
/// put later get codes at once. Bad shapes or a vector no item holds give
/// `CONVERGEDB_INVALID_TOKENIZATION`. Can take long on a large catalog; other calls keep
/// running meanwhile. Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle; `vector` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn convergedb_tokenize(
    db: *const convergedb_db,
    vector: *const c_char,
    levels: usize,
    codes: usize,
    seed: u64,
) -> convergedb_status {
    guard(|| {
        // SAFETY: forwarded contract: `vector` is NULL or NUL-terminated.
        let vector = unsafe { str_arg(vector, "vector") }?;
        let mut opts = TokenizeOptions::new(vector);
        opts.levels = levels;
        opts.codes = codes;
        opts.seed = seed;
        // SAFETY: forwarded contract on `db`.
        unsafe {
            with_db(db, |d| {
                d.tokenize(&opts, None).map(drop).map_err(Into::into)
            })
        }
    })
}

/// The semantic-ID codes of the live item `item_key`. On OK, the codes are in
/// `out_codes[0..*out_len]`; `*out_len` is 0 for an item without codes (no tokenization, or it
/// lacks the tokenized vector). If `cap` is smaller than the item's code count, nothing is
/// copied, `*out_len` receives the count needed and the status is
/// `CONVERGEDB_BUFFER_TOO_SMALL` (so `cap = 0` with `out_codes = NULL` asks for the length).
/// `CONVERGEDB_UNKNOWN_ITEM` when no live item has that key. Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle; `item_key` NULL or NUL-terminated; `out_codes` NULL or
/// writable for `cap` values; `out_len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn convergedb_sid(
    db: *const convergedb_db,
    item_key: *const c_char,
    out_codes: *mut u16,
    cap: usize,
    out_len: *mut usize,
) -> convergedb_status {
    guard(|| {
        // SAFETY: forwarded contract: `item_key` is NULL or NUL-terminated.
        let key = unsafe { str_arg(item_key, "item_key") }?;
        non_null(out_len, "out_len")?;
        // SAFETY: forwarded contract on `db`.
        let codes = unsafe {
            with_db(db, |d| {
                if d.item_id(key)?.is_none() {
                    return Err(Error::UnknownItem {
                        key: key.to_string(),
                    }
                    .into());
                }
                Ok(d.sid(key)?.unwrap_or_default())
            })
        }?;
        // SAFETY: forwarded contract on `out_codes` and `out_len` (checked non-NULL).
        unsafe { copy_codes(&codes, out_codes, cap, out_len) }
    })
}

/// The codes that may follow `prefix` (`prefix_len` codes; `prefix` may be NULL when
/// `prefix_len` is 0) in the semantic ID of some live item, ascending: the constraint of
/// constrained decoding. `*out_len` is 0 when no code may follow. The buffer rule is the one of
/// `convergedb_sid`: too small a `cap` gives `CONVERGEDB_BUFFER_TOO_SMALL` with the needed
/// count in `*out_len`. Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle; `prefix` NULL or readable for `prefix_len` values; `out`
/// NULL or writable for `cap` values; `out_len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn convergedb_allowed_next(
    db: *const convergedb_db,
    prefix: *const u16,
    prefix_len: usize,
    out: *mut u16,
    cap: usize,
    out_len: *mut usize,
) -> convergedb_status {
    guard(|| {
        non_null(out_len, "out_len")?;
        let prefix: &[u16] = if prefix_len == 0 {
            &[]
        } else {
            non_null(prefix, "prefix")?;
            // SAFETY: non-NULL and readable for `prefix_len` values by contract.
            unsafe { std::slice::from_raw_parts(prefix, prefix_len) }
        };
        // SAFETY: forwarded contract on `db`.
        let next = unsafe { with_db(db, |d| Ok(d.allowed_next(prefix))) }?;
        // SAFETY: forwarded contract on `out` and `out_len` (checked non-NULL).
        unsafe { copy_codes(&next, out, cap, out_len) }
    })
}

/// Imports a tokenization file (`docs/model-bundle.md`) or a LETTER `*.index.json` from `path`
/// as a new table version. Every key in the file must be a live item
/// (`CONVERGEDB_INVALID_TOKENIZATION` otherwise); an unreadable file gives `CONVERGEDB_IO`.
/// Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle; `path` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn convergedb_sid_import(
    db: *const convergedb_db,
    path: *const c_char,
) -> convergedb_status {
    guard(|| {
        // SAFETY: forwarded contract: `path` is NULL or NUL-terminated.
        let path = unsafe { str_arg(path, "path") }?;
        // SAFETY: forwarded contract on `db`.
        unsafe {
            with_db(db, |d| {
                Ok(d.import_tokenization(Path::new(path)).map(drop)?)
            })
        }
    })
}

/// Writes the current tokenization and every live item's codes to `path` (the file
/// `convergedb_sid_import` reads). `CONVERGEDB_INVALID_TOKENIZATION` when there is no
/// tokenization yet. Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle; `path` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn convergedb_sid_export(
    db: *const convergedb_db,
    path: *const c_char,
) -> convergedb_status {
    guard(|| {
        // SAFETY: forwarded contract: `path` is NULL or NUL-terminated.
        let path = unsafe { str_arg(path, "path") }?;
        // SAFETY: forwarded contract on `db`.
        unsafe {
            with_db(db, |d| {
                Ok(d.export_tokenization(Path::new(path)).map(drop)?)
            })
        }
    })
}
