//! Running the aligned LLM: ONNX Runtime sessions, prompts and trie-constrained beam search.
//!
//! - `library.rs`: loading the ONNX Runtime library (process-wide);
//! - `manifest.rs`: the bundle manifest;
//! - `bundle.rs`: opening and validating a bundle folder;
//! - `session.rs`: one ONNX Runtime session and its input/output checks;
//! - `scorer.rs`: the [`beam::StepScorer`] over a format-1 session (a KV cache per beam, or
//!   full re-runs);
//! - `prefix_session.rs`, `prefix_scorer.rs`: format 2's prefill and decoding-step sessions and
//!   the shared-prefix scorer over them (one prompt cache per user);
//! - `prompt.rs`: prompt rendering and tokenization;
//! - `beam.rs`: the constrained beam search;
//! - `user_session.rs`: format 3's user encoder (the hybrid re-rank's dense half);
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
mod prefix_scorer;
mod prefix_session;
mod prompt;
mod scorer;
mod session;
mod user_session;

pub(crate) use attached::Model;
pub use attached::ModelInfo;
pub use options::{ExecutionProvider, ModelOptions, MAX_BEAM_WIDTH, MAX_MODEL_BATCH};
