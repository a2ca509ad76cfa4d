//! Arbitrary call sequences through the C API (feature `fuzzing`; the `ffi` fuzz target and
//! `tests/consistency.rs` run it). It lives here because it is `unsafe` code.
//!
//! Every call is made the way a C caller may legally make it (NULL where the header allows a
//! NULL, invalid UTF-8, wrong JSON, too-small buffers, closed handles, out-of-range indexes)
//! and never the way the contract forbids (a freed handle, a buffer shorter than its `cap`).
//! What must hold: no panic crosses (`CONVERGEDB_PANIC` is never returned), every status is a
//! defined code, the last error is empty exactly on success, out-parameters are written on
//! success (and the needed length on `CONVERGEDB_BUFFER_TOO_SMALL`), JSON outputs parse, and
//! `check` stays clean.

mod calls;

use std::ffi::{c_char, CStr, CString};
use std::path::Path;
use std::ptr;

use arbitrary::Unstructured;

use crate::ffi::ann::convergedb_ann_build;
use crate::ffi::call::convergedb_string_free;
use crate::ffi::db::{
    convergedb_check_json, convergedb_db, convergedb_db_close, convergedb_db_flush,
    convergedb_db_free, convergedb_db_open, convergedb_options_default, convergedb_stats_json,
};
use crate::ffi::interactions::{
    convergedb_history_json, convergedb_interaction_record, convergedb_interactions_record_jsonl,
};
use crate::ffi::items::{
    convergedb_item_delete, convergedb_item_get_json, convergedb_item_put,
    convergedb_items_put_jsonl,
};
use crate::ffi::recommend::{
    convergedb_recommend, convergedb_recommend_by_vector, convergedb_recommendation,
    convergedb_recommendation_free, convergedb_recommendation_item_key,
    convergedb_recommendation_item_score, convergedb_recommendation_len,
    convergedb_recommendation_source,
};
use crate::ffi::sid::{
    convergedb_allowed_next, convergedb_sid, convergedb_sid_export, convergedb_sid_import,
    convergedb_tokenize,
};
use crate::ffi::status::{
    convergedb_last_error_message, convergedb_status, convergedb_status_name, convergedb_version,
};

use convergedb_status as S;

use calls::{call, Arg, Call, HANDLES};

fn last_error() -> String {
    // SAFETY: never NULL; valid until the next status-returning call on this thread.
    unsafe { CStr::from_ptr(convergedb_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

thread_local! {
    static TALLY: std::cell::RefCell<std::collections::BTreeMap<String, u64>> =
        std::cell::RefCell::default();
}

/// How often each (call, status) pair occurred on this thread since the last call of this
/// function: the coverage of a run.
pub fn take_tally() -> std::collections::BTreeMap<String, u64> {
    TALLY.with(|t| std::mem::take(&mut *t.borrow_mut()))
}

/// Checks the rules every status-returning call follows.
fn sane(what: &str, status: convergedb_status, bad_args: bool) -> Result<(), String> {
    TALLY.with(|t| {
        *t.borrow_mut()
            .entry(format!("{what} {status:?}"))
            .or_default() += 1
    });
    let message = last_error();
    if status == S::CONVERGEDB_PANIC {
        return Err(format!("{what}: a panic reached the C API: {message}"));
    }
    if (status == S::CONVERGEDB_OK) != message.is_empty() {
        return Err(format!(
            "{what}: status {status:?} with last error {message:?}"
        ));
    }
    if bad_args && status == S::CONVERGEDB_OK {
        return Err(format!("{what}: a NULL or non-UTF-8 argument was accepted"));
    }
    // SAFETY: static string.
    let name = unsafe { CStr::from_ptr(convergedb_status_name(status as i32)) };
    if name.to_bytes() == b"CONVERGEDB_UNKNOWN_STATUS" {
        return Err(format!("{what}: undefined status {}", status as i32));
    }
    Ok(())
}

/// Takes (and frees) a JSON string the library returned, checking that it parses.
fn take_json(what: &str, s: *mut c_char) -> Result<serde_json::Value, String> {
    if s.is_null() {
        return Err(format!("{what}: OK without its JSON output"));
    }
    // SAFETY: a NUL-terminated string returned by the library, freed once just below.
    let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
    // SAFETY: returned by the library and not yet freed.
    unsafe { convergedb_string_free(s) };
    serde_json::from_str(&text).map_err(|e| format!("{what}: output is not JSON ({e}): {text}"))
}

/// The handles of one run.
struct Handles([*mut convergedb_db; HANDLES]);

impl Handles {
    fn get(&self, slot: usize) -> *mut convergedb_db {
        self.0.get(slot).copied().unwrap_or(ptr::null_mut())
    }
}

impl Drop for Handles {
    fn drop(&mut self) {
        for h in self.0 {
            // SAFETY: each slot is NULL or a live handle from `convergedb_db_open`, freed once.
            unsafe { convergedb_db_free(h) };
        }
    }
}

/// Runs the calls decoded from `data` (at most `max_calls`) with databases under `dir`; the
/// first broken rule is returned as an error.
pub fn run_bytes(dir: &Path, data: &[u8], max_calls: usize) -> Result<usize, String> {
    let mut u = Unstructured::new(data);
    let mut handles = Handles([ptr::null_mut(); HANDLES]);
    let mut n = 0;
    let file_path = dir.join("not-a-dir");
    std::fs::write(&file_path, b"x").map_err(|e| e.to_string())?;
    let prelude = Call::Open {
        slot: 0,
        path: 0,
        opts: 0,
        null_out: false,
    };
    one(dir, &mut handles, prelude).map_err(|e| format!("opening the first handle: {e}"))?;
    while n < max_calls && !u.is_empty() {
        let Ok(c) = call(&mut u) else { break };
        n += 1;
        one(dir, &mut handles, c).map_err(|e| format!("call {n}: {e}"))?;
    }
    // Every open handle must still check clean.
    for slot in 0..HANDLES {
        let h = handles.get(slot);
        if !h.is_null() {
            one(dir, &mut handles, Call::Check(slot)).map_err(|e| format!("final check: {e}"))?;
        }
    }
    Ok(n)
}

fn path_arg(dir: &Path, which: u8) -> Arg {
    match which {
        0 | 1 => Arg::text(&dir.join(format!("db{which}")).to_string_lossy()),
        2 => Arg(None),
        3 => Arg(CString::new(vec![b'/', 0xc3, 0x28]).ok()),
        4 => Arg::text(&dir.join("not-a-dir").to_string_lossy()),
        _ => Arg::text(&dir.join("missing/deeper").to_string_lossy()),
    }
}

fn one(dir: &Path, handles: &mut Handles, c: Call) -> Result<(), String> {
    match c {
        Call::Open {
            slot,
            path,
            opts,
            null_out,
        } => {
            if !handles.get(slot).is_null() {
                return Ok(()); // keep the slot's handle; opening into it would leak it
            }
            let p = path_arg(dir, path);
            let mut o = convergedb_options_default();
            match opts {
                1 => o.durability = 7,
                2 => o.flush_every_ms = 0,
                3 => o.create_if_missing = false,
                _ => {}
            }
            let o_ptr: *const _ = if opts == 4 { ptr::null() } else { &o };
            let mut out: *mut convergedb_db = ptr::null_mut();
            let out_ptr: *mut *mut convergedb_db =
                if null_out { ptr::null_mut() } else { &mut out };
            // SAFETY: `p` is NULL or NUL-terminated; `o_ptr` NULL or valid; `out_ptr` NULL or
            // writable.
            let s = unsafe { convergedb_db_open(p.ptr(), o_ptr, out_ptr) };
            sane("open", s, p.is_bad() || null_out || opts == 1)?;
            if s == S::CONVERGEDB_OK {
                if out.is_null() {
                    return Err("open: OK without a handle".into());
                }
                handles.0[slot] = out;
            } else if !out.is_null() {
                return Err(format!("open: {s:?} but *out was written"));
            }
            Ok(())
        }
        Call::Close(slot) => {
            let h = handles.get(slot);
            // SAFETY: NULL or a live handle.
            let s = unsafe { convergedb_db_close(h) };
            sane("close", s, h.is_null())
        }
        Call::Free(slot) => {
            if slot < HANDLES {
                // SAFETY: NULL or a live handle, removed from the table so it is freed once.
                unsafe { convergedb_db_free(handles.0[slot]) };
                handles.0[slot] = ptr::null_mut();
            }
            Ok(())
        }
        Call::Flush(slot) => {
            let h = handles.get(slot);
            // SAFETY: NULL or a live handle.
            let s = unsafe { convergedb_db_flush(h) };
            sane("flush", s, h.is_null())
        }
        Call::Stats(slot, null_out) => {
            let h = handles.get(slot);
            let mut out: *mut c_char = ptr::null_mut();
            let out_ptr: *mut *mut c_char = if null_out { ptr::null_mut() } else { &mut out };
            // SAFETY: NULL or a live handle; `out_ptr` NULL or writable.
            let s = unsafe { convergedb_stats_json(h, out_ptr) };
            sane("stats", s, h.is_null() || null_out)?;
            if s == S::CONVERGEDB_OK {
                take_json("stats", out)?;
            }
            Ok(())
        }
        Call::Check(slot) => {
            let h = handles.get(slot);
            let mut out: *mut c_char = ptr::null_mut();
            // SAFETY: NULL or a live handle; `out` writable.
            let s = unsafe { convergedb_check_json(h, &mut out) };
            sane("check", s, h.is_null())?;
            if s == S::CONVERGEDB_OK {
                let report = take_json("check", out)?;
                if report["problems"].as_array().is_none_or(|p| !p.is_empty()) {
                    return Err(format!("check found problems: {report}"));
                }
            }
            Ok(())
        }
        Call::Put(slot, [key, title, desc, attrs, vectors]) => {
            let h = handles.get(slot);
            // SAFETY: NULL or a live handle; every string NULL or NUL-terminated.
            let s = unsafe {
                convergedb_item_put(
                    h,
                    key.ptr(),
                    title.ptr(),
                    desc.ptr(),
                    attrs.ptr(),
                    vectors.ptr(),
                )
            };
            let bad = h.is_null() || key.is_bad() || title.is_bad() || desc.is_bad();
            let bad_opt = [&attrs, &vectors]
                .iter()
                .any(|a| a.0.is_some() && a.is_bad());
            sane("item_put", s, bad || bad_opt)
        }
        Call::PutJsonl(slot, text) => {
            let h = handles.get(slot);
            // SAFETY: NULL or a live handle; `text` NULL or NUL-terminated.
            let s = unsafe { convergedb_items_put_jsonl(h, text.ptr()) };
            sane("items_put_jsonl", s, h.is_null() || text.is_bad())
        }
        Call::Get(slot, key, null_out) => {
            let h = handles.get(slot);
            let mut out: *mut c_char = ptr::null_mut();
            let out_ptr: *mut *mut c_char = if null_out { ptr::null_mut() } else { &mut out };
            // SAFETY: NULL or a live handle; `key` NULL or NUL-terminated; `out_ptr` NULL or
            // writable.
            let s = unsafe { convergedb_item_get_json(h, key.ptr(), out_ptr) };
            sane("item_get_json", s, h.is_null() || key.is_bad() || null_out)?;
            if s == S::CONVERGEDB_OK {
                take_json("item_get_json", out)?;
            }
            Ok(())
        }
        Call::Delete(slot, key) => {
            let h = handles.get(slot);
            // SAFETY: NULL or a live handle; `key` NULL or NUL-terminated.
            let s = unsafe { convergedb_item_delete(h, key.ptr()) };
            sane("item_delete", s, h.is_null() || key.is_bad())
        }
        Call::Record(slot, user, item, ts, kind, weight) => {
            let h = handles.get(slot);
            // SAFETY: NULL or a live handle; strings NULL or NUL-terminated.
            let s = unsafe {
                convergedb_interaction_record(h, user.ptr(), item.ptr(), ts, kind.ptr(), weight)
            };
            let bad = h.is_null()
                || user.is_bad()
                || item.is_bad()
                || (kind.0.is_some() && kind.is_bad())
                || !weight.is_finite();
            sane("interaction_record", s, bad)
        }
        Call::RecordJsonl(slot, text) => {
            let h = handles.get(slot);
            // SAFETY: NULL or a live handle; `text` NULL or NUL-terminated.
            let s = unsafe { convergedb_interactions_record_jsonl(h, text.ptr()) };
            sane("interactions_record_jsonl", s, h.is_null() || text.is_bad())
        }
        Call::History(slot, user, null_out) => {
            let h = handles.get(slot);
            let mut out: *mut c_char = ptr::null_mut();
            let out_ptr: *mut *mut c_char = if null_out { ptr::null_mut() } else { &mut out };
            // SAFETY: NULL or a live handle; `user` NULL or NUL-terminated; `out_ptr` NULL or
            // writable.
            let s = unsafe { convergedb_history_json(h, user.ptr(), out_ptr) };
            sane("history_json", s, h.is_null() || user.is_bad() || null_out)?;
            if s == S::CONVERGEDB_OK {
                take_json("history_json", out)?;
            }
            Ok(())
        }
        Call::Recommend(slot, user, k, null_out, index) => {
            let h = handles.get(slot);
            let mut out: *mut convergedb_recommendation = ptr::null_mut();
            let out_ptr: *mut *mut convergedb_recommendation =
                if null_out { ptr::null_mut() } else { &mut out };
            // SAFETY: NULL or a live handle; `user` NULL or NUL-terminated; `out_ptr` NULL or
            // writable.
            let s = unsafe { convergedb_recommend(h, user.ptr(), k, out_ptr) };
            let bad = h.is_null() || user.is_bad() || null_out || k == 0 || k == usize::MAX;
            sane("recommend", s, bad)?;
            if s != S::CONVERGEDB_OK {
                return Ok(());
            }
            if out.is_null() {
                return Err("recommend: OK without a result".into());
            }
            // SAFETY: `out` is a live result until the free below.
            let len = unsafe { convergedb_recommendation_len(out) };
            // SAFETY: as above; any index is allowed.
            let key = unsafe { convergedb_recommendation_item_key(out, index) };
            // SAFETY: as above.
            let score = unsafe { convergedb_recommendation_item_score(out, index) };
            // SAFETY: as above.
            let source = unsafe { convergedb_recommendation_source(out) };
            // SAFETY: returned by `convergedb_recommend`, freed once.
            unsafe { convergedb_recommendation_free(out) };
            if len > k || (index < len) == key.is_null() || (index < len) == score.is_nan() {
                return Err(format!(
                    "recommend: len {len} (k {k}), index {index}: key null {}, score {score}",
                    key.is_null()
                ));
            }
            if source.is_null() {
                return Err("recommend: NULL source".into());
            }
            Ok(())
        }
        Call::Tokenize(slot, vector, levels, codes) => {
            let h = handles.get(slot);
            // SAFETY: NULL or a live handle; `vector` NULL or NUL-terminated.
            let s = unsafe { convergedb_tokenize(h, vector.ptr(), levels, codes, 7) };
            sane(
                "tokenize",
                s,
                h.is_null() || vector.is_bad() || levels == 0 || codes < 2,
            )
        }
        Call::Sid(slot, key, cap, null_buf, null_len) => {
            let h = handles.get(slot);
            let mut buf = [u16::MAX; 4];
            let mut len = usize::MAX;
            let buf_ptr = if null_buf {
                ptr::null_mut()
            } else {
                buf.as_mut_ptr()
            };
            let len_ptr: *mut usize = if null_len { ptr::null_mut() } else { &mut len };
            // SAFETY: NULL or a live handle; `key` NULL or NUL-terminated; `buf_ptr` NULL or
            // writable for `cap <= 4` values; `len_ptr` NULL or writable.
            let s = unsafe { convergedb_sid(h, key.ptr(), buf_ptr, cap, len_ptr) };
            sane("sid", s, h.is_null() || key.is_bad() || null_len)?;
            buffer_rule("sid", s, cap, len)
        }
        Call::AllowedNext(slot, prefix, null_prefix, cap, null_len) => {
            let h = handles.get(slot);
            let mut buf = [u16::MAX; 4];
            let mut len = usize::MAX;
            let p = if null_prefix {
                ptr::null()
            } else {
                prefix.as_ptr()
            };
            let len_ptr: *mut usize = if null_len { ptr::null_mut() } else { &mut len };
            // SAFETY: NULL or a live handle; `p` NULL or readable for `prefix.len()` values;
            // `buf` writable for `cap <= 4` values; `len_ptr` NULL or writable.
            let s = unsafe {
                convergedb_allowed_next(h, p, prefix.len(), buf.as_mut_ptr(), cap, len_ptr)
            };
            let bad = h.is_null() || null_len || (null_prefix && !prefix.is_empty());
            sane("allowed_next", s, bad)?;
            buffer_rule("allowed_next", s, cap, len)
        }
        Call::Import(slot, which, bytes) => {
            let h = handles.get(slot);
            let file = dir.join("import.json");
            std::fs::write(&file, &bytes).map_err(|e| e.to_string())?;
            let p = match which {
                0 => Arg(None),
                1 => Arg::text(&dir.join("missing.json").to_string_lossy()),
                2 => Arg::text(&dir.join("export.json").to_string_lossy()),
                _ => Arg::text(&file.to_string_lossy()),
            };
            // SAFETY: NULL or a live handle; `p` NULL or NUL-terminated.
            let s = unsafe { convergedb_sid_import(h, p.ptr()) };
            sane("sid_import", s, h.is_null() || p.is_bad())
        }
        Call::Export(slot, which) => {
            let h = handles.get(slot);
            let p = match which {
                0 => Arg(None),
                1 => Arg::text(&dir.join("missing/x.json").to_string_lossy()),
                _ => Arg::text(&dir.join("export.json").to_string_lossy()),
            };
            // SAFETY: NULL or a live handle; `p` NULL or NUL-terminated.
            let s = unsafe { convergedb_sid_export(h, p.ptr()) };
            sane("sid_export", s, h.is_null() || p.is_bad() || which == 1)
        }
        Call::AnnBuild(slot, vector) => {
            let h = handles.get(slot);
            // SAFETY: NULL or a live handle; `vector` NULL or NUL-terminated.
            let s = unsafe { convergedb_ann_build(h, vector.ptr()) };
            sane("ann_build", s, h.is_null() || vector.is_bad())
        }
        Call::RecommendByVector(slot, vector, dim, nan, k, null_out, index) => {
            let h = handles.get(slot);
            let mut query = [1.0f32, 0.5, 0.25];
            if nan {
                query[0] = f32::NAN;
            }
            let q = if dim == 0 {
                ptr::null()
            } else {
                query.as_ptr()
            };
            let mut out: *mut convergedb_recommendation = ptr::null_mut();
            let out_ptr: *mut *mut convergedb_recommendation =
                if null_out { ptr::null_mut() } else { &mut out };
            // SAFETY: NULL or a live handle; `vector` NULL or NUL-terminated; `q` NULL (dim 0)
            // or `dim` <= 3 readable floats; `out_ptr` NULL or writable.
            let s = unsafe { convergedb_recommend_by_vector(h, vector.ptr(), q, dim, k, out_ptr) };
            let bad = h.is_null() || vector.is_bad() || null_out || k == 0 || k == usize::MAX;
            sane("recommend_by_vector", s, bad || (nan && dim > 0))?;
            if s != S::CONVERGEDB_OK {
                return Ok(());
            }
            if out.is_null() {
                return Err("recommend_by_vector: OK without a result".into());
            }
            // SAFETY: `out` is a live result until the free below.
            let len = unsafe { convergedb_recommendation_len(out) };
            // SAFETY: as above; any index is allowed.
            let key = unsafe { convergedb_recommendation_item_key(out, index) };
            // SAFETY: as above.
            let score = unsafe { convergedb_recommendation_item_score(out, index) };
            // SAFETY: returned by `convergedb_recommend_by_vector`, freed once.
            unsafe { convergedb_recommendation_free(out) };
            if len > k || (index < len) == key.is_null() || (index < len) == score.is_nan() {
                return Err(format!(
                    "recommend_by_vector: len {len} (k {k}), index {index}: key null {}, score {score}",
                    key.is_null()
                ));
            }
            Ok(())
        }
        Call::StatusName(v) => {
            // SAFETY: static strings.
            let (name, version) = unsafe {
                (
                    CStr::from_ptr(convergedb_status_name(v)),
                    CStr::from_ptr(convergedb_version()),
                )
            };
            let known = (0..=27).contains(&v);
            if known == (name.to_bytes() == b"CONVERGEDB_UNKNOWN_STATUS") || version.is_empty() {
                return Err(format!("status_name({v}) = {name:?}"));
            }
            Ok(())
        }
    }
}

/// The buffer rule of `convergedb_sid` and `convergedb_allowed_next`.
fn buffer_rule(what: &str, s: convergedb_status, cap: usize, len: usize) -> Result<(), String> {
    match s {
        S::CONVERGEDB_OK if len > cap => Err(format!("{what}: OK with length {len} > cap {cap}")),
        S::CONVERGEDB_BUFFER_TOO_SMALL if len == usize::MAX || len <= cap => Err(format!(
            "{what}: BUFFER_TOO_SMALL with cap {cap} and needed length {len}"
        )),
        _ => Ok(()),
    }
}
