//! The model and the refresh pipeline: `convergedb_model_attach`, `convergedb_model_detach`,
//! `convergedb_refresh_now`, `convergedb_wait_idle`.

use std::ffi::c_char;
use std::time::Duration;

use super::call::{guard, non_null, opt_str_arg, str_arg};
use super::db::{convergedb_db, with_db};
use super::status::convergedb_status;
use crate::ModelOptions;

/// Loads, validates and attaches the model bundle in directory `dir` (CPU execution provider),
/// replacing any attached model; cached lists of another model become stale and are refreshed
/// in the background. `ort_library` is the ONNX Runtime shared library to load, or NULL for
/// `ORT_DYLIB_PATH`, then `~/.cache/convergedb/onnxruntime-1.32.0/`. A bad bundle, a bundle of
/// another tokenization or a missing library is an error naming the cause. Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle; `dir` NULL or NUL-terminated; `ort_library` NULL or
/// NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn convergedb_model_attach(
    db: *const convergedb_db,
    dir: *const c_char,
    ort_library: *const c_char,
) -> convergedb_status {
    guard(|| {
        // SAFETY: forwarded contract on `dir`.
        let dir = unsafe { str_arg(dir, "dir") }?;
        // SAFETY: forwarded contract on `ort_library`.
        let lib = unsafe { opt_str_arg(ort_library, "ort_library") }?;
        let mut options = ModelOptions::new();
        if let Some(lib) = lib {
            options = options.ort_library(lib);
        }
        // SAFETY: forwarded contract on `db`.
        unsafe { with_db(db, |d| Ok(d.attach_model(dir, options).map(|_| ())?)) }
    })
}

/// Detaches the model. Cached lists are still served; nothing refreshes them until a model is
/// attached again. Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn convergedb_model_detach(db: *const convergedb_db) -> convergedb_status {
    guard(|| {
        // SAFETY: forwarded contract on `db`.
        unsafe {
            with_db(db, |d| {
                d.detach_model();
                Ok(())
            })
        }
    })
}

/// Regenerates `user`'s cached list now, on this thread. Fails when no model is attached,
/// when the user has no history (`CONVERGEDB_UNKNOWN_USER`), or when the history kept
/// changing meanwhile. Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle; `user` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn convergedb_refresh_now(
    db: *const convergedb_db,
    user: *const c_char,
) -> convergedb_status {
    guard(|| {
        // SAFETY: forwarded contract on `user`.
        let user = unsafe { str_arg(user, "user") }?;
        // SAFETY: forwarded contract on `db`.
        unsafe { with_db(db, |d| Ok(d.refresh_now(user).map(|_| ())?)) }
    })
}

/// Waits until no user is queued for a refresh, at most `timeout_ms` milliseconds
/// (`UINT64_MAX`: no limit). `*idle` receives true when the queue drained, false on timeout.
/// Fails when users are queued but no usable model is attached. Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle; `idle` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn convergedb_wait_idle(
    db: *const convergedb_db,
    timeout_ms: u64,
    idle: *mut bool,
) -> convergedb_status {
    guard(|| {
        non_null(idle, "idle")?;
        let timeout = if timeout_ms == u64::MAX {
            Duration::MAX
        } else {
            Duration::from_millis(timeout_ms)
        };
        // SAFETY: forwarded contract on `db`.
        let done = unsafe { with_db(db, |d| Ok(d.wait_idle_timeout(timeout)?)) }?;
        // SAFETY: `idle` is non-NULL and writable by contract.
        unsafe { idle.write(done) };
        Ok(())
    })
}
