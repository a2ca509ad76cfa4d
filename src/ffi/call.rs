//! The call machinery every entry point runs in: `guard` (catch_unwind, status, last error),
//! argument checks (NULL, UTF-8), and the strings handed to C with `convergedb_string_free`.

use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::status::{convergedb_status, set_last_error, Failure, FfiResult};

use convergedb_status as S;

/// Runs one entry point: catches panics, maps the outcome to a status and records the message
/// (empty on success) as this thread's last error.
pub(crate) fn guard(f: impl FnOnce() -> FfiResult) -> convergedb_status {
    let outcome = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_string());
        Err(Failure::new(
            S::CONVERGEDB_PANIC,
            format!("panic inside convergedb (a bug, please report it): {text}"),
        ))
    });
    match outcome {
        Ok(()) => {
            set_last_error("");
            S::CONVERGEDB_OK
        }
        Err(f) => {
            set_last_error(&f.message);
            f.status
        }
    }
}

/// Like [`guard`] for functions that return a value and no status: a panic gives `fallback`.
pub(crate) fn guard_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Checks a pointer argument for NULL.
pub(crate) fn non_null<T>(p: *const T, name: &str) -> FfiResult {
    if p.is_null() {
        return Err(Failure::new(
            S::CONVERGEDB_NULL_ARGUMENT,
            format!("argument `{name}` is NULL"),
        ));
    }
    Ok(())
}

/// Borrows a NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> FfiResult<&'a str> {
    non_null(p, name)?;
    // SAFETY: `p` is non-NULL and, by this function's contract, NUL-terminated and live for 'a.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|e| {
        Failure::new(
            S::CONVERGEDB_INVALID_UTF8,
            format!("argument `{name}` is not valid UTF-8: {e}"),
        )
    })
}

/// Like [`str_arg`], with NULL meaning "not given".
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(p: *const c_char, name: &str) -> FfiResult<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract of this function.
    unsafe { str_arg(p, name) }.map(Some)
}

/// Moves `s` into a C string the caller frees with `convergedb_string_free`.
pub(crate) fn owned_c_string(s: String) -> FfiResult<*mut c_char> {
    CString::new(s)
        .map(CString::into_raw)
        .map_err(|e| Failure::new(S::CONVERGEDB_OTHER, format!("string holds a NUL byte: {e}")))
}

/// Serialises `value` to JSON as an owned C string.
pub(crate) fn json_c_string<T: serde::Serialize>(value: &T) -> FfiResult<*mut c_char> {
    let s = serde_json::to_string(value)
        .map_err(|e| Failure::new(S::CONVERGEDB_OTHER, format!("JSON encoding failed: {e}")))?;
    owned_c_string(s)
}

/// Frees a string returned by this library (`convergedb_*_json`). NULL is a no-op. Passing any
/// other pointer, or freeing twice, is undefined behaviour. Thread-safe.
///
/// # Safety
/// `s` must be NULL or a string returned by this library and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn convergedb_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    // SAFETY: by contract `s` came from `CString::into_raw` in `owned_c_string` and is freed
    // once.
    drop(unsafe { CString::from_raw(s) });
}
