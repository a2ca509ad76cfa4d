//! Fuzzing harnesses (feature `fuzzing`; not a stable API), shared by the cargo-fuzz targets in
//! `fuzz/` and by the stable tests (`tests/consistency.rs`, `tests/crash.rs`,
//! `tests/corruption.rs`), so that a libFuzzer campaign and `cargo test` run the same code.
//!
//! - [`model`]: the reference model, an in-memory deterministic implementation of the
//!   database's observable behaviour (catalog, vectors, histories, popularity, which items hold
//!   semantic-ID codes, stats counters);
//! - [`op`]: the `Op` enum decoded from fuzzer bytes (`arbitrary::Unstructured`);
//! - [`ops`]: the harness that applies each op to a real `Db` and to the model, compares outcomes and the
//!   whole observable state after every step, and runs `check()`;
//! - [`decode`]: arbitrary bytes into every on-disk record decoder and the tokenization-file
//!   parser;
//! - [`ffi`]: arbitrary call sequences through the C API.
//!
//! The model lives here rather than in `tests/` so that the fuzz crate (a separate package)
//! and the integration tests use one copy, and so that it can name crate-private pieces (the
//! C-API functions, the decoders) without widening the public API.

// Harness code: a panic is how a broken property is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod decode;
pub mod model;
pub mod op;
pub mod ops;
pub mod refresh_model;

pub use crate::ffi::fuzz as ffi;

pub use arbitrary;
pub use decode::{
    decode_ann_dump, decode_bundle_manifest, decode_records, decode_tokenization_file,
};
