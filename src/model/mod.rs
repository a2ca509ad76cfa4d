//! Running the aligned LLM: ONNX Runtime sessions, prompts and trie-constrained beam search.
//!
//! - `library.rs`: loading the ONNX Runtime library (process-wide);
//! - `manifest.rs`: the bundle manifest;
//! - `bundle.rs`: opening and validating a bundle folder;
//! - `session.rs`: one ONNX Runtime session and its input/output checks;
//! - `scorer.rs`: the [`beam::StepScorer`] over a session, with or without the KV cache;
//! - `prompt.rs`: prompt rendering and tokenization;
//! - `beam.rs`: the constrained beam search;
//! - `attached.rs`: a loaded bundle with its session pool;
//! - `options.rs`: [`ModelOptions`];
//! - `fake.rs` (feature `fuzzing`): a deterministic test double for the fuzz harness.

pub(crate) mod beam;
mod library;
pub(crate) mod manifest;

pub use library::{default_library_path, ORT_MIN_MINOR, ORT_VERSION};
mod attached;
mod bundle;
#[cfg(feature = "fuzzing")]
mod fake;
mod options;
mod prompt;
mod scorer;
mod session;

pub(crate) use attached::Model;
pub use attached::ModelInfo;
pub use options::{ExecutionProvider, ModelOptions, MAX_BEAM_WIDTH, MAX_MODEL_BATCH};
