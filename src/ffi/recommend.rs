//! `convergedb_recommend`, `convergedb_recommend_by_vector` and their result object.

use std::ffi::c_char;

use super::call::{guard, guard_value, non_null, str_arg};
use super::db::{convergedb_db, with_db};
use super::status::{convergedb_status, Failure, FfiResult};
use crate::{ScoredItem, Source};

/// A ranked recommendation list: an opaque object made by `convergedb_recommend`, owned by the
/// caller and freed by `convergedb_recommendation_free`. Immutable, so it may be read from many
/// threads at once; it does not refer to the database handle (it outlives its close and free).
pub struct convergedb_recommendation {
    /// Every key followed by a NUL byte, back to back (one allocation for the whole list).
    keys: Vec<u8>,
    /// Start of each key in `keys`.
    starts: Vec<usize>,
    scores: Vec<f64>,
    source: Source,
    stale: bool,
    history_version: u64,
}

impl convergedb_recommendation {
    fn new(
        items: &[ScoredItem],
        source: Source,
        stale: bool,
        history_version: u64,
    ) -> FfiResult<Self> {
        let n = items.len();
        let mut keys = Vec::with_capacity(items.iter().map(|i| i.key.len() + 1).sum());
        let mut starts = Vec::with_capacity(n);
        let mut scores = Vec::with_capacity(n);
        for item in items {
            if item.key.as_bytes().contains(&0) {
                return Err(Failure::invalid(format!(
                    "item key {:?} holds a NUL byte",
                    item.key
                )));
            }
            starts.push(keys.len());
            keys.extend_from_slice(item.key.as_bytes());
            keys.push(0);
            scores.push(item.score);
        }
        Ok(convergedb_recommendation {
            keys,
            starts,
            scores,
            source,
            stale,
            history_version,
        })
    }

    fn key(&self, i: usize) -> Option<*const c_char> {
        let start = *self.starts.get(i)?;
        Some(self.keys[start..].as_ptr().cast())
    }
}

/// Up to `k` items for `user`, best first, excluding the items already in the user's history.
/// A user with no history (or never seen) gets the plain popularity list. `k` must be between 1
/// and the database's `max_k` (10,000 by default), else `CONVERGEDB_INVALID_K`; the list holds
/// fewer than `k` items when the catalog has fewer eligible items (possibly none).
///
/// On `CONVERGEDB_OK`, `*out` receives a new result object the caller owns and frees with
/// `convergedb_recommendation_free`; on error `*out` is untouched. Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle; `user` NULL or NUL-terminated; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn convergedb_recommend(
    db: *const convergedb_db,
    user: *const c_char,
    k: usize,
    out: *mut *mut convergedb_recommendation,
) -> convergedb_status {
    guard(|| {
        // SAFETY: forwarded contract: `user` is NULL or NUL-terminated.
        let user = unsafe { str_arg(user, "user") }?;
        non_null(out, "out")?;
        // SAFETY: forwarded contract on `db`.
        let rec = unsafe { with_db(db, |d| Ok(d.recommend(user, k)?)) }?;
        let result = Box::new(convergedb_recommendation::new(
            &rec.items,
            rec.source,
            rec.stale,
            rec.history_version,
        )?);
        // SAFETY: `out` is non-NULL and writable by contract.
        unsafe { out.write(Box::into_raw(result)) };
        Ok(())
    })
}

/// Up to `k` live items whose vector `vector` is nearest to `query` (`dim` floats) by cosine
/// similarity (the score), best first, from the vector's ANN index: the C face of
/// `Db::recommend_by_vector`. Without an index for `vector`, `CONVERGEDB_NO_ANN_INDEX` (the message
/// says how to build one); a query of another dimension than the vector's, or holding NaN or
/// an infinity, `CONVERGEDB_INVALID_ARGUMENT`; `k` as for `convergedb_recommend`.
///
/// On `CONVERGEDB_OK`, `*out` receives a new result object (source "ann", not stale, history
/// version 0) the caller owns and frees with `convergedb_recommendation_free`; on error `*out`
/// is untouched. Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle; `vector` NULL or NUL-terminated; `query` NULL or
/// `dim` readable floats (NULL allowed when `dim` is 0); `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn convergedb_recommend_by_vector(
    db: *const convergedb_db,
    vector: *const c_char,
    query: *const f32,
    dim: usize,
    k: usize,
    out: *mut *mut convergedb_recommendation,
) -> convergedb_status {
    guard(|| {
        // SAFETY: forwarded contract: `vector` is NULL or NUL-terminated.
        let vector = unsafe { str_arg(vector, "vector") }?;
        non_null(out, "out")?;
        let query: &[f32] = if dim == 0 {
            &[]
        } else {
            non_null(query, "query")?;
            // SAFETY: non-NULL and, by contract, `dim` readable floats for the call.
            unsafe { std::slice::from_raw_parts(query, dim) }
        };
        // SAFETY: forwarded contract on `db`.
        let items = unsafe { with_db(db, |d| Ok(d.recommend_by_vector(vector, query, k)?)) }?;
        let result = Box::new(convergedb_recommendation::new(
            &items,
            Source::Ann,
            false,
            0,
        )?);
        // SAFETY: `out` is non-NULL and writable by contract.
        unsafe { out.write(Box::into_raw(result)) };
        Ok(())
    })
}

/// Borrows the result behind `rec`.
///
/// # Safety
/// `rec` must be NULL or a live result from `convergedb_recommend`.
unsafe fn result<'a>(
    rec: *const convergedb_recommendation,
) -> Option<&'a convergedb_recommendation> {
    // SAFETY: by contract `rec` is NULL or points to a live result.
    unsafe { rec.as_ref() }
}

/// Number of items in the list (0 when `rec` is NULL).
///
/// # Safety
/// `rec` must be NULL or a live result from `convergedb_recommend`.
#[no_mangle]
pub unsafe extern "C" fn convergedb_recommendation_len(
    rec: *const convergedb_recommendation,
) -> usize {
    // SAFETY: forwarded contract on `rec`.
    guard_value(0, || unsafe { result(rec) }.map_or(0, |r| r.starts.len()))
}

/// The key of item `i` (0-based, best first), or NULL when `rec` is NULL or `i` is out of
/// range. The string is borrowed from `rec`: valid until `convergedb_recommendation_free(rec)`;
/// do not free it.
///
/// # Safety
/// `rec` must be NULL or a live result from `convergedb_recommend`.
#[no_mangle]
pub unsafe extern "C" fn convergedb_recommendation_item_key(
    rec: *const convergedb_recommendation,
    i: usize,
) -> *const c_char {
    guard_value(std::ptr::null(), || {
        // SAFETY: forwarded contract on `rec`.
        unsafe { result(rec) }
            .and_then(|r| r.key(i))
            .unwrap_or(std::ptr::null())
    })
}

/// The score of item `i` (higher is better; for popularity, the retained interactions with the
/// item), or NaN when `rec` is NULL or `i` is out of range.
///
/// # Safety
/// `rec` must be NULL or a live result from `convergedb_recommend`.
#[no_mangle]
pub unsafe extern "C" fn convergedb_recommendation_item_score(
    rec: *const convergedb_recommendation,
    i: usize,
) -> f64 {
    guard_value(f64::NAN, || {
        // SAFETY: forwarded contract on `rec`.
        unsafe { result(rec) }
            .and_then(|r| r.scores.get(i).copied())
            .unwrap_or(f64::NAN)
    })
}

/// Which part of the database produced the list: "popularity", "ann" or "model". A static string
/// (never free it); NULL when `rec` is NULL.
///
/// # Safety
/// `rec` must be NULL or a live result from `convergedb_recommend`.
#[no_mangle]
pub unsafe extern "C" fn convergedb_recommendation_source(
    rec: *const convergedb_recommendation,
) -> *const c_char {
    guard_value(std::ptr::null(), || {
        // SAFETY: forwarded contract on `rec`.
        unsafe { result(rec) }.map_or(std::ptr::null(), |r| match r.source {
            Source::Popularity => c"popularity".as_ptr(),
            Source::Model => c"model".as_ptr(),
            Source::Ann => c"ann".as_ptr(),
            #[allow(unreachable_patterns)] // `Source` is #[non_exhaustive]
            _ => c"other".as_ptr(),
        })
    })
}

/// True when a cached model list answered but is no longer current (the history changed, or
/// another model or tokenization is in use, or it held a deleted item, filtered out): the
/// user is queued for a refresh. False for every other answer and when `rec` is NULL.
///
/// # Safety
/// `rec` must be NULL or a live result from `convergedb_recommend`.
#[no_mangle]
pub unsafe extern "C" fn convergedb_recommendation_stale(
    rec: *const convergedb_recommendation,
) -> bool {
    guard_value(false, || {
        // SAFETY: forwarded contract on `rec`.
        unsafe { result(rec) }.is_some_and(|r| r.stale)
    })
}

/// The history version the list was computed against (a cached list's stamp; 0 for a user
/// with no history and when `rec` is NULL).
///
/// # Safety
/// `rec` must be NULL or a live result from `convergedb_recommend`.
#[no_mangle]
pub unsafe extern "C" fn convergedb_recommendation_history_version(
    rec: *const convergedb_recommendation,
) -> u64 {
    guard_value(0, || {
        // SAFETY: forwarded contract on `rec`.
        unsafe { result(rec) }.map_or(0, |r| r.history_version)
    })
}

/// Frees a result and the key strings borrowed from it. NULL is a no-op; freeing twice is
/// undefined behaviour.
///
/// # Safety
/// `rec` must be NULL or a result from `convergedb_recommend` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn convergedb_recommendation_free(rec: *mut convergedb_recommendation) {
    if rec.is_null() {
        return;
    }
    // SAFETY: by contract `rec` came from `Box::into_raw` in `convergedb_recommend` and is
    // freed once.
    drop(unsafe { Box::from_raw(rec) });
}
