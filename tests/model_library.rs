//! A missing, foreign or too old ONNX Runtime library is a clear error, never a panic.
//!
//! Kept in its own test binary: ONNX Runtime is loaded once per process, and nothing here
//! loads the real library.

use std::path::{Path, PathBuf};
use std::process::Command;

use convergedb::{Config, Db, Error, ModelOptions};

fn db(dir: &Path) -> Db {
    Config::new(dir.join("db")).open().unwrap()
}

fn attach_err(lib: &Path) -> (PathBuf, String) {
    let tmp = tempfile::tempdir().unwrap();
    let db = db(tmp.path());
    // The bundle is validated first (without ONNX Runtime), then the library is loaded: the
    // shipped bundle passes the first step.
    let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ml100k");
    match db.attach_model(&bundle, ModelOptions::new().ort_library(lib)) {
        Err(Error::OrtLibrary { path, reason }) => (path, reason),
        other => panic!("expected Error::OrtLibrary, got {other:?}"),
    }
}

#[test]
fn a_missing_library_is_named_with_a_fix() {
    let (path, reason) = attach_err(Path::new("/nonexistent/libonnxruntime.so.1.32.0"));
    assert_eq!(path, Path::new("/nonexistent/libonnxruntime.so.1.32.0"));
    assert!(reason.contains("ORT_DYLIB_PATH"), "{reason}");
}

#[test]
fn a_file_that_is_not_a_library_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("libonnxruntime.so");
    std::fs::write(&fake, b"this is not an ELF file").unwrap();
    let (_, reason) = attach_err(&fake);
    assert!(reason.contains("cannot load it"), "{reason}");
}

/// Builds a shared library with gcc from `source`.
fn compile(dir: &Path, name: &str, source: &str) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    let so = dir.join(format!("lib{name}.so"));
    std::fs::write(&c, source).unwrap();
    let out = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&c)
        .output()
        .expect("gcc is needed by this test (./scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    so
}

#[test]
fn a_library_without_the_onnx_runtime_api_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let so = compile(tmp.path(), "notort", "int answer(void) { return 42; }\n");
    let (_, reason) = attach_err(&so);
    assert!(reason.contains("not an ONNX Runtime library"), "{reason}");
}

#[test]
fn a_too_old_onnx_runtime_is_refused_with_its_version() {
    let tmp = tempfile::tempdir().unwrap();
    // Exports OrtGetApiBase like ONNX Runtime 1.10 would: the version check must refuse it
    // before any other entry point is used.
    let src = r#"
        #include <stddef.h>
        #include <stdint.h>
        typedef struct { const void* (*GetApi)(uint32_t); const char* (*GetVersionString)(void); } OrtApiBase;
        static const void* get_api(uint32_t v) { (void)v; return NULL; }
        static const char* version(void) { return "1.10.0"; }
        static const OrtApiBase base = { get_api, version };
        const OrtApiBase* OrtGetApiBase(void) { return &base; }
    "#;
    let so = compile(tmp.path(), "oldort", src);
    let (_, reason) = attach_err(&so);
    assert!(reason.contains("wrong ONNX Runtime version"), "{reason}");
    assert!(reason.contains("1.10.0"), "{reason}");
}
