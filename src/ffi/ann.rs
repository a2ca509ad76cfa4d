//! ANN indexes: build (or rebuild) the index of a vector name, so that
//! `convergedb_recommend_by_vector` (in `recommend.rs`) can search it.

use std::ffi::c_char;

use super::call::{guard, str_arg};
use super::db::{convergedb_db, with_db};
use super::status::convergedb_status;

/// Builds (or rebuilds) the HNSW index over the stored vectors named `vector` and keeps it in
/// step with later writes; the index is dumped beside the database and reloaded on open.
/// `CONVERGEDB_UNKNOWN_VECTOR` when no vector of that name is stored. Thread-safe (writers wait
/// for the build).
///
/// # Safety
/// `db` must be NULL or a live handle; `vector` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn convergedb_ann_build(
    db: *const convergedb_db,
    vector: *const c_char,
) -> convergedb_status {
    guard(|| {
        // SAFETY: forwarded contract: `vector` is NULL or NUL-terminated.
        let vector = unsafe { str_arg(vector, "vector") }?;
        // SAFETY: forwarded contract on `db`.
        unsafe { with_db(db, |d| d.build_ann(vector).map(|_| ()).map_err(Into::into)) }
    })
}
