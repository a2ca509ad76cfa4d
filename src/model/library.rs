//! Loading the ONNX Runtime shared library (ort's `load-dynamic`).
//!
//! The library is process-wide: ort loads it once and keeps it for the life of the process. The
//! path is resolved as: the path in [`ModelOptions`](super::ModelOptions), then `ORT_DYLIB_PATH`,
//! then the location `scripts/lib.sh` installs it to
//! (`$XDG_CACHE_HOME/convergedb/onnxruntime-1.32.0/libonnxruntime.so.1.32.0`, with
//! `XDG_CACHE_HOME` defaulting to `~/.cache`). A missing, foreign or too old library is an
//! [`Error::OrtLibrary`]; asking for a second, different library in the same process is one too.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use parking_lot::Mutex;

use crate::{Error, Result};

/// The ONNX Runtime version the setup scripts install (PyPI wheel `onnxruntime`).
pub const ORT_VERSION: &str = "1.32.0";

/// The ONNX Runtime API level this build is compiled against (ort feature `api-31`): the
/// library's minor version must be at least this.
pub const ORT_MIN_MINOR: u32 = 31;

/// A loaded ONNX Runtime: its path, version and the environment every session is built in.
pub(crate) struct Runtime {
    pub path: PathBuf,
    pub version: String,
    pub env: ort::environment::Environment,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static LOADING: Mutex<()> = Mutex::new(());

/// Where the setup scripts put the library.
pub fn default_library_path() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(
        cache
            .join("convergedb")
            .join(format!("onnxruntime-{ORT_VERSION}"))
            .join(format!("libonnxruntime.so.{ORT_VERSION}")),
    )
}

/// The library path to use: explicit, else `ORT_DYLIB_PATH`, else the default location.
pub(crate) fn resolve(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    match default_library_path() {
        Some(p) if p.is_file() => Ok(p),
        other => Err(Error::OrtLibrary {
            path: other.unwrap_or_default(),
            reason: "no ONNX Runtime library: set ModelOptions::ort_library or ORT_DYLIB_PATH, \
                     or run ./scripts/setup-ort (fetches onnxruntime==1.32.0 from PyPI)"
                .into(),
        }),
    }
}

/// Loads the library (once per process) and returns the runtime.
pub(crate) fn load(explicit: Option<&Path>) -> Result<&'static Runtime> {
    let path = resolve(explicit)?;
    let _guard = LOADING.lock();
    if let Some(rt) = RUNTIME.get() {
        return if same_file(&rt.path, &path) {
            Ok(rt)
        } else {
            Err(Error::OrtLibrary {
                path,
                reason: format!(
                    "this process already loaded ONNX Runtime from {}; one process can use only one \
                     ONNX Runtime library",
                    rt.path.display()
                ),
            })
        };
    }
    check_file(&path)?;
    let fail = |reason: String| Error::OrtLibrary {
        path: path.clone(),
        reason,
    };
    let builder = ort::init_from(&path).map_err(|e| fail(describe_load_error(&e)))?;
    let env = builder.with_name("convergedb").build().map_err(|e| {
        fail(format!(
            "could not create the ONNX Runtime environment: {e}"
        ))
    })?;
    let version = library_version(&path);
    let rt = Runtime { path, version, env };
    Ok(RUNTIME.get_or_init(|| rt))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Refuses paths that cannot be a library before handing them to the dynamic loader.
fn check_file(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::OrtLibrary {
        path: path.to_path_buf(),
        reason: format!("cannot read it ({e}); run ./scripts/setup-ort or set ORT_DYLIB_PATH"),
    })?;
    if !meta.is_file() {
        return Err(Error::OrtLibrary {
            path: path.to_path_buf(),
            reason: "not a file".into(),
        });
    }
    Ok(())
}

fn describe_load_error(e: &ort::LoadDynamicError) -> String {
    let text = e.to_string();
    if text.contains("not compatible") {
        format!("wrong ONNX Runtime version: {text} (this build needs 1.{ORT_MIN_MINOR} or newer)")
    } else if text.contains("OrtGetApiBase") {
        format!("not an ONNX Runtime library: {text}")
    } else {
        format!("cannot load it: {text}")
    }
}

/// The library's version: from the build info (`git-branch=rel-1.32.0`) when it names a release,
/// else from the file name (`libonnxruntime.so.1.32.0`), else the build info itself. ort checked
/// at load time that the minor version is at least [`ORT_MIN_MINOR`].
fn library_version(path: &Path) -> String {
    let info = ort::info();
    let from_info = info
        .split(|c: char| c == ',' || c.is_whitespace())
        .find_map(|part| part.trim().strip_prefix("git-branch=rel-"));
    let from_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split_once(".so."))
        .map(|(_, v)| v)
        .filter(|v| v.starts_with("1.") && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
    from_info
        .or(from_name)
        .map(str::to_string)
        .unwrap_or_else(|| format!("1.{ORT_MIN_MINOR}+ ({info})"))
}
