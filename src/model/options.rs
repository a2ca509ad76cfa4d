//! How a model runs: library, execution provider, threads, beam width.

use std::path::PathBuf;

use crate::{Error, Result};

/// Where ONNX Runtime runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionProvider {
    /// ONNX Runtime's CPU provider (the default).
    #[default]
    Cpu,
    /// NVIDIA CUDA on the given device. Registered with `error_on_failure`: when CUDA cannot be
    /// used, attaching the model fails instead of silently running on the CPU. Needs a build
    /// with the `cuda` feature and the `onnxruntime-gpu` library.
    Cuda {
        /// CUDA device ordinal.
        device_id: i32,
    },
}

/// Options for running an attached model. Build with [`ModelOptions::new`] and the builder
/// methods.
#[derive(Clone, Debug)]
pub struct ModelOptions {
    pub(crate) ort_library: Option<PathBuf>,
    pub(crate) provider: ExecutionProvider,
    pub(crate) intra_threads: usize,
    pub(crate) beam_width: usize,
    pub(crate) use_kv_cache: bool,
    pub(crate) max_batch: usize,
    pub(crate) rerank: bool,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            ort_library: None,
            provider: ExecutionProvider::Cpu,
            intra_threads: 1,
            beam_width: 20,
            use_kv_cache: true,
            max_batch: 64,
            rerank: true,
        }
    }
}

/// Widest beam accepted.
pub const MAX_BEAM_WIDTH: usize = 1024;
/// Largest batch of users per model run accepted.
pub const MAX_MODEL_BATCH: usize = 4096;

impl ModelOptions {
    /// The defaults: CPU, 1 intra-op thread per session, beam width 20, KV cache on, batches of
    /// up to 64 users, the ONNX Runtime library found as described in
    /// [`ModelOptions::ort_library`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The ONNX Runtime shared library to load. Without it: `ORT_DYLIB_PATH`, then
    /// [`default_library_path`](crate::model::default_library_path) (where `./scripts/setup-ort`
    /// installs it). One process loads one library.
    pub fn ort_library(mut self, path: impl Into<PathBuf>) -> Self {
        self.ort_library = Some(path.into());
        self
    }

    /// The execution provider (default CPU).
    pub fn provider(mut self, provider: ExecutionProvider) -> Self {
        self.provider = provider;
        self
    }

    /// ONNX Runtime intra-op threads per session (default 1; 0 = ONNX Runtime's default, one
    /// per core). Workers each own a session, so the total is workers x threads.
    pub fn intra_threads(mut self, n: usize) -> Self {
        self.intra_threads = n;
        self
    }

    /// Beams kept per level (default 20, 1..=1024).
    pub fn beam_width(mut self, n: usize) -> Self {
        self.beam_width = n;
        self
    }

    /// Use the graph's KV cache for incremental decoding (default true). Off re-runs the whole
    /// sequence at every level (for measurement, or graphs without a cache).
    pub fn kv_cache(mut self, on: bool) -> Self {
        self.use_kv_cache = on;
        self
    }

    /// Most users per model run (default 64); larger requests are split.
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n;
        self
    }

    /// Apply a format-3 bundle's hybrid re-rank (default true). Off serves the beam search
    /// alone (for measuring what the re-rank adds, or a database without the bundle's item
    /// vectors); bundles without a re-rank ignore it.
    pub fn rerank(mut self, on: bool) -> Self {
        self.rerank = on;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if !(1..=MAX_BEAM_WIDTH).contains(&self.beam_width) {
            return Err(Error::InvalidArgument(format!(
                "beam width {} is out of range 1..={MAX_BEAM_WIDTH}",
                self.beam_width
            )));
        }
        if !(1..=MAX_MODEL_BATCH).contains(&self.max_batch) {
            return Err(Error::InvalidArgument(format!(
                "model batch {} is out of range 1..={MAX_MODEL_BATCH}",
                self.max_batch
            )));
        }
        if self.intra_threads > 1024 {
            return Err(Error::InvalidArgument(format!(
                "intra_threads {} is out of range 0..=1024",
                self.intra_threads
            )));
        }
        Ok(())
    }
}
