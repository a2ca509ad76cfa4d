//! Status codes, their mapping from `convergedb::Error`, and the thread-local last error
//! message.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};

use crate::Error;

/// What a `convergedb_*` call returned. The values are stable and never reused: a new kind of
/// error gets a new number. `CONVERGEDB_OK` (0) is success; every other value is an error whose
/// message `convergedb_last_error_message()` returns on the same thread.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum convergedb_status {
    /// Success.
    CONVERGEDB_OK = 0,
    /// A pointer argument that must not be NULL was NULL.
    CONVERGEDB_NULL_ARGUMENT = 1,
    /// A string argument is not valid UTF-8.
    CONVERGEDB_INVALID_UTF8 = 2,
    /// Any other argument that cannot be accepted (bad JSON in an argument, a NaN weight, an
    /// unknown durability value).
    CONVERGEDB_INVALID_ARGUMENT = 3,
    /// An item or user key is empty.
    CONVERGEDB_EMPTY_KEY = 4,
    /// A key or text field is over its limit.
    CONVERGEDB_TOO_LONG = 5,
    /// A vector's dimension differs from the one stored for its name.
    CONVERGEDB_VECTOR_DIMENSION = 6,
    /// A vector is empty or holds NaN or an infinity.
    CONVERGEDB_INVALID_VECTOR = 7,
    /// The item is not in the catalog.
    CONVERGEDB_UNKNOWN_ITEM = 8,
    /// The item is deleted.
    CONVERGEDB_DELETED_ITEM = 9,
    /// No interaction was ever recorded for the user.
    CONVERGEDB_UNKNOWN_USER = 10,
    /// The item already exists (insert never replaces).
    CONVERGEDB_ITEM_EXISTS = 11,
    /// The same item key appears twice in one batch.
    CONVERGEDB_DUPLICATE_IN_BATCH = 12,
    /// The batch is over the configured limit.
    CONVERGEDB_BATCH_TOO_LARGE = 13,
    /// `k` is 0 or over the configured `max_k` (10,000 by default).
    CONVERGEDB_INVALID_K = 14,
    /// The path is not a convergedb database.
    CONVERGEDB_NOT_A_DATABASE = 15,
    /// The database was written by a newer format version.
    CONVERGEDB_UNSUPPORTED_FORMAT = 16,
    /// A stored record could not be decoded: restore a backup.
    CONVERGEDB_CORRUPTION = 17,
    /// The storage engine reported an error.
    CONVERGEDB_STORAGE = 18,
    /// An I/O error outside the storage engine (files, directories).
    CONVERGEDB_IO = 19,
    /// Another handle or process holds the database's lock.
    CONVERGEDB_IN_USE = 20,
    /// The handle is poisoned by an earlier failure: close it and reopen.
    CONVERGEDB_POISONED = 21,
    /// A tokenization is not usable (bad shape, no such vector, empty catalog, foreign file).
    CONVERGEDB_INVALID_TOKENIZATION = 22,
    /// An import input could not be parsed (for the JSONL functions: a line is not a valid
    /// object; the message names the line).
    CONVERGEDB_IMPORT = 23,
    /// The handle was closed by `convergedb_db_close`.
    CONVERGEDB_CLOSED = 24,
    /// A panic inside the library was caught; the message holds its text. Report it as a bug.
    CONVERGEDB_PANIC = 25,
    /// An output buffer is too small: `*out_len` holds the length needed, nothing else written.
    CONVERGEDB_BUFFER_TOO_SMALL = 26,
    /// An error of a kind this version of the C API does not name.
    CONVERGEDB_OTHER = 27,
    /// Writes acknowledged as durable are missing after recovery (the storage engine's log is
    /// damaged): restore a backup, or reopen with `convergedb_options.accept_lost_writes`.
    CONVERGEDB_LOST_WRITES = 28,
    /// No model is attached (`convergedb_model_attach` first).
    CONVERGEDB_NO_MODEL = 29,
    /// The model bundle was trained on another tokenization than the database's current one.
    CONVERGEDB_FOREIGN_TOKENIZATION = 30,
    /// A write lost a race it retried (concurrent writers kept changing what it depended on):
    /// retry the call.
    CONVERGEDB_CONFLICT = 31,
    /// The vector has no ANN index (build one: `Db::build_ann`, CLI `convergedb ann-build`).
    CONVERGEDB_NO_ANN_INDEX = 32,
    /// No vector of this name is stored in the database.
    CONVERGEDB_UNKNOWN_VECTOR = 33,
    /// The Redis Cluster of the per-user tier failed the call (unreachable, a failover in
    /// progress, no replica for a sync write): the message says which; retrying may succeed.
    CONVERGEDB_CLUSTER = 34,
}

use convergedb_status as S;

impl convergedb_status {
    fn name(self) -> &'static CStr {
        match self {
            S::CONVERGEDB_OK => c"CONVERGEDB_OK",
            S::CONVERGEDB_NULL_ARGUMENT => c"CONVERGEDB_NULL_ARGUMENT",
            S::CONVERGEDB_INVALID_UTF8 => c"CONVERGEDB_INVALID_UTF8",
            S::CONVERGEDB_INVALID_ARGUMENT => c"CONVERGEDB_INVALID_ARGUMENT",
            S::CONVERGEDB_EMPTY_KEY => c"CONVERGEDB_EMPTY_KEY",
            S::CONVERGEDB_TOO_LONG => c"CONVERGEDB_TOO_LONG",
            S::CONVERGEDB_VECTOR_DIMENSION => c"CONVERGEDB_VECTOR_DIMENSION",
            S::CONVERGEDB_INVALID_VECTOR => c"CONVERGEDB_INVALID_VECTOR",
            S::CONVERGEDB_UNKNOWN_ITEM => c"CONVERGEDB_UNKNOWN_ITEM",
            S::CONVERGEDB_DELETED_ITEM => c"CONVERGEDB_DELETED_ITEM",
            S::CONVERGEDB_UNKNOWN_USER => c"CONVERGEDB_UNKNOWN_USER",
            S::CONVERGEDB_ITEM_EXISTS => c"CONVERGEDB_ITEM_EXISTS",
            S::CONVERGEDB_DUPLICATE_IN_BATCH => c"CONVERGEDB_DUPLICATE_IN_BATCH",
            S::CONVERGEDB_BATCH_TOO_LARGE => c"CONVERGEDB_BATCH_TOO_LARGE",
            S::CONVERGEDB_INVALID_K => c"CONVERGEDB_INVALID_K",
            S::CONVERGEDB_NOT_A_DATABASE => c"CONVERGEDB_NOT_A_DATABASE",
            S::CONVERGEDB_UNSUPPORTED_FORMAT => c"CONVERGEDB_UNSUPPORTED_FORMAT",
            S::CONVERGEDB_CORRUPTION => c"CONVERGEDB_CORRUPTION",
            S::CONVERGEDB_STORAGE => c"CONVERGEDB_STORAGE",
            S::CONVERGEDB_IO => c"CONVERGEDB_IO",
            S::CONVERGEDB_IN_USE => c"CONVERGEDB_IN_USE",
            S::CONVERGEDB_POISONED => c"CONVERGEDB_POISONED",
            S::CONVERGEDB_INVALID_TOKENIZATION => c"CONVERGEDB_INVALID_TOKENIZATION",
            S::CONVERGEDB_IMPORT => c"CONVERGEDB_IMPORT",
            S::CONVERGEDB_CLOSED => c"CONVERGEDB_CLOSED",
            S::CONVERGEDB_PANIC => c"CONVERGEDB_PANIC",
            S::CONVERGEDB_BUFFER_TOO_SMALL => c"CONVERGEDB_BUFFER_TOO_SMALL",
            S::CONVERGEDB_OTHER => c"CONVERGEDB_OTHER",
            S::CONVERGEDB_LOST_WRITES => c"CONVERGEDB_LOST_WRITES",
            S::CONVERGEDB_NO_MODEL => c"CONVERGEDB_NO_MODEL",
            S::CONVERGEDB_FOREIGN_TOKENIZATION => c"CONVERGEDB_FOREIGN_TOKENIZATION",
            S::CONVERGEDB_CONFLICT => c"CONVERGEDB_CONFLICT",
            S::CONVERGEDB_NO_ANN_INDEX => c"CONVERGEDB_NO_ANN_INDEX",
            S::CONVERGEDB_UNKNOWN_VECTOR => c"CONVERGEDB_UNKNOWN_VECTOR",
            S::CONVERGEDB_CLUSTER => c"CONVERGEDB_CLUSTER",
        }
    }

    const ALL: [convergedb_status; 35] = [
        S::CONVERGEDB_OK,
        S::CONVERGEDB_NULL_ARGUMENT,
        S::CONVERGEDB_INVALID_UTF8,
        S::CONVERGEDB_INVALID_ARGUMENT,
        S::CONVERGEDB_EMPTY_KEY,
        S::CONVERGEDB_TOO_LONG,
        S::CONVERGEDB_VECTOR_DIMENSION,
        S::CONVERGEDB_INVALID_VECTOR,
        S::CONVERGEDB_UNKNOWN_ITEM,
        S::CONVERGEDB_DELETED_ITEM,
        S::CONVERGEDB_UNKNOWN_USER,
        S::CONVERGEDB_ITEM_EXISTS,
        S::CONVERGEDB_DUPLICATE_IN_BATCH,
        S::CONVERGEDB_BATCH_TOO_LARGE,
        S::CONVERGEDB_INVALID_K,
        S::CONVERGEDB_NOT_A_DATABASE,
        S::CONVERGEDB_UNSUPPORTED_FORMAT,
        S::CONVERGEDB_CORRUPTION,
        S::CONVERGEDB_STORAGE,
        S::CONVERGEDB_IO,
        S::CONVERGEDB_IN_USE,
        S::CONVERGEDB_POISONED,
        S::CONVERGEDB_INVALID_TOKENIZATION,
        S::CONVERGEDB_IMPORT,
        S::CONVERGEDB_CLOSED,
        S::CONVERGEDB_PANIC,
        S::CONVERGEDB_BUFFER_TOO_SMALL,
        S::CONVERGEDB_OTHER,
        S::CONVERGEDB_LOST_WRITES,
        S::CONVERGEDB_NO_MODEL,
        S::CONVERGEDB_FOREIGN_TOKENIZATION,
        S::CONVERGEDB_CONFLICT,
        S::CONVERGEDB_NO_ANN_INDEX,
        S::CONVERGEDB_UNKNOWN_VECTOR,
        S::CONVERGEDB_CLUSTER,
    ];
}

/// A failed call: its status and message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: convergedb_status,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(status: convergedb_status, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Failure::new(S::CONVERGEDB_INVALID_ARGUMENT, message)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::EmptyKey { .. } => S::CONVERGEDB_EMPTY_KEY,
            Error::TooLong { .. } => S::CONVERGEDB_TOO_LONG,
            Error::VectorDimension { .. } => S::CONVERGEDB_VECTOR_DIMENSION,
            Error::InvalidVector { .. } => S::CONVERGEDB_INVALID_VECTOR,
            Error::UnknownItem { .. } => S::CONVERGEDB_UNKNOWN_ITEM,
            Error::DeletedItem { .. } => S::CONVERGEDB_DELETED_ITEM,
            Error::UnknownUser { .. } => S::CONVERGEDB_UNKNOWN_USER,
            Error::ItemExists { .. } => S::CONVERGEDB_ITEM_EXISTS,
            Error::DuplicateInBatch { .. } => S::CONVERGEDB_DUPLICATE_IN_BATCH,
            Error::BatchTooLarge { .. } => S::CONVERGEDB_BATCH_TOO_LARGE,
            Error::InvalidK { .. } => S::CONVERGEDB_INVALID_K,
            Error::InvalidArgument(_) => S::CONVERGEDB_INVALID_ARGUMENT,
            Error::InvalidTokenization(_) => S::CONVERGEDB_INVALID_TOKENIZATION,
            Error::Import { .. } | Error::ImportPartial { .. } => S::CONVERGEDB_IMPORT,
            Error::InUse { .. } => S::CONVERGEDB_IN_USE,
            Error::NotADatabase { .. } => S::CONVERGEDB_NOT_A_DATABASE,
            Error::UnsupportedFormat { .. } => S::CONVERGEDB_UNSUPPORTED_FORMAT,
            Error::Corruption { .. } => S::CONVERGEDB_CORRUPTION,
            Error::Storage(_) => S::CONVERGEDB_STORAGE,
            Error::Io { .. } => S::CONVERGEDB_IO,
            Error::Poisoned(_) => S::CONVERGEDB_POISONED,
            Error::LostWrites { .. } => S::CONVERGEDB_LOST_WRITES,
            Error::NoModel => S::CONVERGEDB_NO_MODEL,
            Error::ForeignTokenization { .. } => S::CONVERGEDB_FOREIGN_TOKENIZATION,
            Error::Conflict(_) => S::CONVERGEDB_CONFLICT,
            Error::NoAnnIndex { .. } => S::CONVERGEDB_NO_ANN_INDEX,
            Error::UnknownVector { .. } => S::CONVERGEDB_UNKNOWN_VECTOR,
            Error::Cluster(_) => S::CONVERGEDB_CLUSTER,
            #[allow(unreachable_patterns)] // `Error` is #[non_exhaustive]: future variants
            _ => S::CONVERGEDB_OTHER,
        };
        Failure::new(status, e.to_string())
    }
}

pub(crate) type FfiResult<T = ()> = Result<T, Failure>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_last_error(message: &str) {
    LAST_ERROR.with(|cell| {
        let mut last = cell.borrow_mut();
        if message.is_empty() && last.is_empty() {
            return; // the common case (success after success) allocates nothing
        }
        *last = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    });
}

/// The message of the last failed call on the calling thread, or "" if the last call succeeded.
///
/// Every function that returns a `convergedb_status` sets it (to "" on success). The pointer is
/// owned by the library and stays valid until the next `convergedb_*` call that returns a
/// status on the same thread; copy it to keep it. Never NULL; do not free it. Thread-safe: each
/// thread has its own message.
#[no_mangle]
pub extern "C" fn convergedb_last_error_message() -> *const c_char {
    super::call::guard_value(c"".as_ptr(), || {
        LAST_ERROR.with(|cell| cell.borrow().as_ptr())
    })
}

/// The name of a status code, e.g. "CONVERGEDB_CLOSED"; "CONVERGEDB_UNKNOWN_STATUS" for a value
/// this version does not define. The string is static: never free it. Thread-safe.
#[no_mangle]
pub extern "C" fn convergedb_status_name(status: i32) -> *const c_char {
    convergedb_status::ALL
        .iter()
        .find(|s| **s as i32 == status)
        .map_or(c"CONVERGEDB_UNKNOWN_STATUS".as_ptr(), |s| s.name().as_ptr())
}

/// The library version, e.g. "0.1.0". Static: never free it. Thread-safe.
#[no_mangle]
pub extern "C" fn convergedb_version() -> *const c_char {
    const V: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    V.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::call::guard;

    fn last() -> String {
        // SAFETY: the pointer is valid until the next status-returning call on this thread.
        unsafe { CStr::from_ptr(convergedb_last_error_message()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_the_panic_status() {
        let status = guard(|| panic!("boom"));
        assert_eq!(status, S::CONVERGEDB_PANIC);
        assert!(last().contains("boom"), "{}", last());
        assert_eq!(guard(|| Ok(())), S::CONVERGEDB_OK);
        assert_eq!(last(), "");
    }

    #[test]
    fn model_and_recovery_errors_have_their_own_status() {
        let cases = [
            (
                Error::LostWrites {
                    path: "d".into(),
                    acknowledged: 5,
                    recovered: 3,
                },
                S::CONVERGEDB_LOST_WRITES,
            ),
            (Error::NoModel, S::CONVERGEDB_NO_MODEL),
            (
                Error::ForeignTokenization {
                    path: "b".into(),
                    bundle: "x".into(),
                    database: "y".into(),
                },
                S::CONVERGEDB_FOREIGN_TOKENIZATION,
            ),
            (Error::Conflict("c".into()), S::CONVERGEDB_CONFLICT),
            (
                Error::NoAnnIndex { vector: "v".into() },
                S::CONVERGEDB_NO_ANN_INDEX,
            ),
            (
                Error::UnknownVector { name: "v".into() },
                S::CONVERGEDB_UNKNOWN_VECTOR,
            ),
            (Error::Cluster("down".into()), S::CONVERGEDB_CLUSTER),
        ];
        for (error, status) in cases {
            let message = error.to_string();
            let f = Failure::from(error);
            assert_eq!(f.status, status, "{message}");
            assert_eq!(f.message, message);
        }
    }

    #[test]
    fn status_values_and_names_are_stable() {
        for (i, s) in convergedb_status::ALL.iter().enumerate() {
            assert_eq!(*s as i32, i as i32);
            // SAFETY: static string.
            let name = unsafe { CStr::from_ptr(convergedb_status_name(i as i32)) };
            assert_eq!(name, s.name());
        }
        // SAFETY: static string.
        let unknown = unsafe { CStr::from_ptr(convergedb_status_name(-1)) };
        assert_eq!(unknown, c"CONVERGEDB_UNKNOWN_STATUS");
    }
}
