//! The database handle: options, open, close, free, flush, and the JSON reports (stats, check).

use std::ffi::c_char;

use parking_lot::RwLock;

use super::call::{guard, json_c_string, non_null, opt_str_arg, str_arg};
use super::status::{convergedb_status, Failure, FfiResult};
use crate::cluster::{ClusterConfig, ClusterDurability};
use crate::{Config, Db, Durability};

/// `convergedb_options.durability`: writes return once committed in memory; a background
/// thread flushes every `flush_every_ms`.
pub const CONVERGEDB_DURABILITY_BUFFERED: u32 = 0;
/// `convergedb_options.durability`: every write flushes the log before it returns.
pub const CONVERGEDB_DURABILITY_SYNC: u32 = 1;

/// Options for `convergedb_db_open`. Always start from `convergedb_options_default()` and change
/// the fields you need, so code keeps compiling (and meaning the same) when fields are added.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct convergedb_options {
    /// `CONVERGEDB_DURABILITY_BUFFERED` (default) or `CONVERGEDB_DURABILITY_SYNC`; any other
    /// value fails the open with `CONVERGEDB_INVALID_ARGUMENT`.
    pub durability: u32,
    /// Create the database when the directory is missing or empty (default true).
    pub create_if_missing: bool,
    /// Background flush interval of buffered durability in milliseconds (default 500; must be
    /// at least 1 with buffered durability, ignored with sync).
    pub flush_every_ms: u64,
    /// Size of the storage engine's page cache in bytes (default 64 MiB; below 1 MiB the open
    /// fails with `CONVERGEDB_INVALID_ARGUMENT`).
    pub cache_capacity_bytes: u64,
    /// Background refresh workers for the cached lists (default: one per core, at most 8; 0:
    /// lists are refreshed by `convergedb_wait_idle` on the caller's thread).
    pub refresh_workers: u32,
    /// Open even when writes acknowledged as durable are missing after recovery (default
    /// false: such an open fails with `CONVERGEDB_LOST_WRITES`). With true, the open goes on
    /// with what was recovered and the acknowledgement record is rewritten to match.
    pub accept_lost_writes: bool,
    /// Keep the per-user tier (histories, cached lists, the refresh queue) in this Redis
    /// Cluster: node URLs, comma-separated (`redis://host:port,...`; UTF-8, NUL-terminated,
    /// read only during the open). Default NULL: everything in the directory. With
    /// `CONVERGEDB_DURABILITY_SYNC` a record returns once a replica holds it. An unreachable
    /// cluster fails the open with `CONVERGEDB_CLUSTER`. See docs/cluster.md.
    pub cluster_urls: *const c_char,
    /// The cluster key namespace of this database (NULL: `"convergedb"`; letters, digits,
    /// `_`, `-`, `.`). Ignored without `cluster_urls`.
    pub cluster_namespace: *const c_char,
}

/// An open database: an opaque handle made by `convergedb_db_open` and freed by
/// `convergedb_db_free`. One handle may be used from many threads at once.
pub struct convergedb_db {
    inner: RwLock<Option<Db>>,
}

/// Runs `f` on the open database behind `db`, holding the handle's read lock so that
/// `convergedb_db_close` waits for it.
///
/// # Safety
/// `db` must be NULL or a handle from `convergedb_db_open` not yet freed.
pub(crate) unsafe fn with_db<T>(
    db: *const convergedb_db,
    f: impl FnOnce(&Db) -> FfiResult<T>,
) -> FfiResult<T> {
    non_null(db, "db")?;
    // SAFETY: non-NULL, and by contract a live handle made by `Box::into_raw` in `open`.
    let handle = unsafe { &*db };
    let open = handle.inner.read();
    match open.as_ref() {
        Some(d) => f(d),
        None => Err(Failure::new(
            convergedb_status::CONVERGEDB_CLOSED,
            "the database handle is closed (convergedb_db_close was called)",
        )),
    }
}

/// The default options: buffered durability flushed every 500 ms, create if missing, 64 MiB
/// page cache. Thread-safe.
#[no_mangle]
pub extern "C" fn convergedb_options_default() -> convergedb_options {
    convergedb_options {
        durability: CONVERGEDB_DURABILITY_BUFFERED,
        create_if_missing: true,
        flush_every_ms: 500,
        cache_capacity_bytes: 64 * 1024 * 1024,
        refresh_workers: crate::default_workers() as u32,
        accept_lost_writes: false,
        cluster_urls: std::ptr::null(),
        cluster_namespace: std::ptr::null(),
    }
}

fn config(path: &str, o: &convergedb_options) -> FfiResult<Config> {
    let durability = match o.durability {
        CONVERGEDB_DURABILITY_BUFFERED => Durability::Buffered {
            flush_every_ms: o.flush_every_ms,
        },
        CONVERGEDB_DURABILITY_SYNC => Durability::Sync,
        other => {
            return Err(Failure::invalid(format!(
                "durability = {other}: use CONVERGEDB_DURABILITY_BUFFERED (0) or CONVERGEDB_DURABILITY_SYNC (1)"
            )))
        }
    };
    let mut config = Config::new(path)
        .durability(durability)
        .create_if_missing(o.create_if_missing)
        .cache_capacity_bytes(o.cache_capacity_bytes)
        .refresh_workers(o.refresh_workers as usize)
        .accept_lost_writes(o.accept_lost_writes);
    // SAFETY: by `convergedb_db_open`'s contract both are NULL or NUL-terminated strings.
    let urls = unsafe { opt_str_arg(o.cluster_urls, "cluster_urls") }?;
    // SAFETY: as above.
    let namespace = unsafe { opt_str_arg(o.cluster_namespace, "cluster_namespace") }?;
    if let Some(urls) = urls {
        let mut c = ClusterConfig::new(urls.split(',').map(str::trim).filter(|u| !u.is_empty()));
        if let Some(ns) = namespace {
            c.namespace = ns.to_string();
        }
        c.durability = match durability {
            Durability::Sync => ClusterDurability::Sync,
            Durability::Buffered { .. } => ClusterDurability::Buffered,
        };
        config = config.cluster(c);
    }
    Ok(config)
}

/// Opens (or creates) the database in directory `path` (UTF-8, NUL-terminated, not empty: ""
/// gives `CONVERGEDB_INVALID_ARGUMENT`, never a database in the current directory).
///
/// `opts` may be NULL for `convergedb_options_default()`; it is only read during the call. On
/// `CONVERGEDB_OK`, `*out` receives a new handle that the caller owns and must release with
/// `convergedb_db_free` (after `convergedb_db_close` if it wants to see the flush status); on
/// error `*out` is left untouched. A database directory can be open in one handle at a time:
/// a second open fails with `CONVERGEDB_IN_USE`. Thread-safe.
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string; `opts` NULL or a valid
/// `convergedb_options`; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn convergedb_db_open(
    path: *const c_char,
    opts: *const convergedb_options,
    out: *mut *mut convergedb_db,
) -> convergedb_status {
    guard(|| {
        // SAFETY: forwarded contract: `path` is NULL or NUL-terminated.
        let path = unsafe { str_arg(path, "path") }?;
        non_null(out, "out")?;
        let opts = if opts.is_null() {
            convergedb_options_default()
        } else {
            // SAFETY: non-NULL and, by contract, points to a valid `convergedb_options`.
            unsafe { *opts }
        };
        let db = config(path, &opts)?.open()?;
        let handle = Box::new(convergedb_db {
            inner: RwLock::new(Some(db)),
        });
        // SAFETY: `out` is non-NULL and writable by contract.
        unsafe { out.write(Box::into_raw(handle)) };
        Ok(())
    })
}

/// Flushes and closes the database. The handle stays valid: every later call on it (close
/// included) returns `CONVERGEDB_CLOSED`; free it with `convergedb_db_free`. Waits for calls in
/// flight on other threads to finish. If the final flush fails its status is returned, and the
/// handle is closed anyway.
///
/// # Safety
/// `db` must be NULL or a handle from `convergedb_db_open` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn convergedb_db_close(db: *mut convergedb_db) -> convergedb_status {
    guard(|| {
        non_null(db, "db")?;
        // SAFETY: non-NULL, and by contract a live handle made by `convergedb_db_open`.
        let handle = unsafe { &*db };
        let taken = handle.inner.write().take();
        match taken {
            Some(d) => Ok(d.close()?),
            None => Err(Failure::new(
                convergedb_status::CONVERGEDB_CLOSED,
                "the database handle is already closed",
            )),
        }
    })
}

/// Frees a handle, closing the database first if it is still open (errors of that close are
/// not reported: call `convergedb_db_close` first to see them). NULL is a no-op. The handle must
/// not be used afterwards, and no other thread may be using it during the call.
///
/// # Safety
/// `db` must be NULL or a handle from `convergedb_db_open` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn convergedb_db_free(db: *mut convergedb_db) {
    if db.is_null() {
        return;
    }
    super::call::guard_value((), || {
        // SAFETY: by contract `db` came from `Box::into_raw` in `convergedb_db_open` and is
        // freed once, with no other call in flight.
        drop(unsafe { Box::from_raw(db) });
    })
}

/// Writes everything buffered to disk. Thread-safe.
///
/// # Safety
/// `db` must be NULL or a handle from `convergedb_db_open` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn convergedb_db_flush(db: *const convergedb_db) -> convergedb_status {
    // SAFETY: forwarded contract on `db`.
    guard(|| unsafe { with_db(db, |d| Ok(d.flush()?)) })
}

/// Counts and settings as a JSON object: `items`, `deleted_items`, `users`, `interactions`,
/// `interactions_recorded`, `catalog_version`, `vector_dims`, `kinds`, `disk_bytes`,
/// `format_version`, `durability`, `poisoned`. On `CONVERGEDB_OK`, `*out_json` receives a
/// string the caller owns and frees with `convergedb_string_free`. Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn convergedb_stats_json(
    db: *const convergedb_db,
    out_json: *mut *mut c_char,
) -> convergedb_status {
    guard(|| {
        non_null(out_json, "out_json")?;
        // SAFETY: forwarded contract on `db`.
        let s = unsafe { with_db(db, |d| json_c_string(&d.stats()?)) }?;
        // SAFETY: `out_json` is non-NULL and writable by contract.
        unsafe { out_json.write(s) };
        Ok(())
    })
}

/// Scans the whole store and verifies every invariant (blocks writers while it runs).
///
/// A check that ran returns `CONVERGEDB_OK` even when it found problems: `*out_json` receives
/// `{"clean": bool, "items": n, "users": n, "interactions": n, "problems": [strings]}`, and the
/// database is consistent exactly when `clean` is true (`problems` is empty). A status other
/// than OK means the check could not run (e.g. a storage error). The caller frees the string
/// with `convergedb_string_free`. Thread-safe.
///
/// # Safety
/// `db` must be NULL or a live handle; `out_json` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn convergedb_check_json(
    db: *const convergedb_db,
    out_json: *mut *mut c_char,
) -> convergedb_status {
    guard(|| {
        non_null(out_json, "out_json")?;
        // SAFETY: forwarded contract on `db`.
        let s = unsafe {
            with_db(db, |d| {
                let report = d.check()?;
                let mut v =
                    serde_json::to_value(&report).map_err(|e| Failure::invalid(e.to_string()))?;
                v["clean"] = report.is_clean().into();
                json_c_string(&v)
            })
        }?;
        // SAFETY: `out_json` is non-NULL and writable by contract.
        unsafe { out_json.write(s) };
        Ok(())
    })
}
