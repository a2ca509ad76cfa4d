//! One ONNX Runtime session over a bundle's graph, with its input/output contract checked.

use std::borrow::Cow;
use std::path::Path;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{TensorElementType, TensorRef};

use super::beam::Logits;
use super::library::Runtime;
use super::manifest::Manifest;
use super::options::{ExecutionProvider, ModelOptions};
use crate::{Error, Result};

pub(crate) fn ort_err(context: &str) -> impl Fn(ort::Error) -> Error + '_ {
    move |e| Error::Inference(format!("{context}: {e}"))
}

/// A session and the shape facts of its graph.
pub(crate) struct LmSession {
    session: Session,
    pub layers: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    has_position_ids: bool,
    /// The graph takes and returns a KV cache.
    pub has_cache: bool,
    past_names: Vec<String>,
    present_names: Vec<String>,
    /// Time spent inside ONNX Runtime (`Session::run` and reading its outputs), nanoseconds.
    pub ort_nanos: u64,
}

/// Builds a session: provider, threads, then the graph's inputs and outputs are checked against
/// the manifest (`Error::InvalidBundle` naming what is missing).
pub(crate) fn open(
    rt: &Runtime,
    onnx: &Path,
    m: &Manifest,
    opts: &ModelOptions,
) -> Result<LmSession> {
    let session = commit(rt, onnx, opts)?;
    check_graph(session, onnx, m)
}

/// A session over the graph file `onnx` with the options' provider and threads.
pub(crate) fn commit(rt: &Runtime, onnx: &Path, opts: &ModelOptions) -> Result<Session> {
    let mut builder = Session::builder(&rt.env).map_err(ort_err("creating a session"))?;
    builder = builder
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| Error::Inference(format!("setting the optimization level: {e}")))?;
    if opts.intra_threads > 0 {
        builder = builder
            .with_intra_threads(opts.intra_threads)
            .map_err(|e| Error::Inference(format!("setting intra-op threads: {e}")))?;
    }
    builder = match opts.provider {
        ExecutionProvider::Cpu => builder
            .with_execution_providers([ort::ep::CPU::default()
                .with_arena_allocator(true)
                .build()
                .error_on_failure()])
            .map_err(|e| Error::Inference(format!("registering the CPU provider: {e}")))?,
        ExecutionProvider::Cuda { device_id } => cuda(builder, device_id)?,
    };
    builder
        .commit_from_file(onnx)
        .map_err(|e| Error::InvalidBundle {
            path: onnx.to_path_buf(),
            reason: format!("ONNX Runtime cannot load the graph: {e}"),
        })
}

#[cfg(feature = "cuda")]
fn cuda(
    builder: ort::session::builder::SessionBuilder,
    device_id: i32,
) -> Result<ort::session::builder::SessionBuilder> {
    builder
        .with_execution_providers([ort::ep::CUDA::default()
            .with_device_id(device_id)
            .build()
            .error_on_failure()])
        .map_err(|e| {
            Error::Inference(format!(
                "the CUDA provider (device {device_id}) is not usable: {e}"
            ))
        })
}

#[cfg(not(feature = "cuda"))]
fn cuda(
    _builder: ort::session::builder::SessionBuilder,
    device_id: i32,
) -> Result<ort::session::builder::SessionBuilder> {
    Err(Error::InvalidArgument(format!(
        "CUDA (device {device_id}) was requested but this build has no CUDA support: rebuild with --features cuda"
    )))
}

fn check_graph(session: Session, onnx: &Path, m: &Manifest) -> Result<LmSession> {
    let bad = |reason: String| Error::InvalidBundle {
        path: onnx.to_path_buf(),
        reason,
    };
    let input = |name: &str| session.inputs().iter().find(|o| o.name() == name);
    let output = |name: &str| session.outputs().iter().find(|o| o.name() == name);
    let want =
        |found: Option<&ort::value::Outlet>, name: &str, ty: TensorElementType, what: &str| {
            match found.map(|o| o.dtype().tensor_type()) {
                None => Err(bad(format!("the graph has no {what} {name:?}"))),
                Some(Some(t)) if t == ty => Ok(()),
                Some(t) => Err(bad(format!(
                    "{what} {name:?} has type {t:?}, expected {ty:?}"
                ))),
            }
        };
    want(
        input("input_ids"),
        "input_ids",
        TensorElementType::Int64,
        "input",
    )?;
    want(
        input("attention_mask"),
        "attention_mask",
        TensorElementType::Int64,
        "input",
    )?;
    want(
        output("logits"),
        "logits",
        TensorElementType::Float32,
        "output",
    )?;
    let has_position_ids = input("position_ids").is_some();
    if has_position_ids {
        want(
            input("position_ids"),
            "position_ids",
            TensorElementType::Int64,
            "input",
        )?;
    }
    let layers = m.graph.num_layers;
    let has_cache = input("past_key_values.0.key").is_some();
    if m.graph.kv_cache && !has_cache {
        return Err(bad(
            "the manifest says kv_cache but the graph has no input past_key_values.0.key".into(),
        ));
    }
    let mut past_names = Vec::new();
    let mut present_names = Vec::new();
    if has_cache {
        for i in 0..layers {
            for kind in ["key", "value"] {
                let p = format!("past_key_values.{i}.{kind}");
                let q = format!("present.{i}.{kind}");
                want(input(&p), &p, TensorElementType::Float32, "input")?;
                want(output(&q), &q, TensorElementType::Float32, "output")?;
                past_names.push(p);
                present_names.push(q);
            }
        }
        if input(&format!("past_key_values.{layers}.key")).is_some() {
            return Err(bad(format!(
                "the graph has more than the manifest's {layers} layers of past_key_values"
            )));
        }
    }
    let known = |n: &str| {
        n == "input_ids"
            || n == "attention_mask"
            || n == "position_ids"
            || past_names.iter().any(|p| p == n)
    };
    if let Some(extra) = session.inputs().iter().find(|o| !known(o.name())) {
        return Err(bad(format!(
            "the graph has an input {:?} this database does not know how to feed",
            extra.name()
        )));
    }
    Ok(LmSession {
        session,
        layers,
        heads: m.graph.num_heads,
        head_dim: m.graph.head_dim,
        vocab: m.graph.vocab_size,
        has_position_ids,
        has_cache,
        past_names,
        present_names,
        ort_nanos: 0,
    })
}

/// One forward pass's inputs, all row-major.
pub(crate) struct Step<'a> {
    pub batch: usize,
    pub seq: usize,
    pub past_len: usize,
    pub input_ids: &'a [i64],
    pub attention_mask: &'a [i64],
    pub position_ids: &'a [i64],
    /// `2 * layers` tensors `[batch, heads, past_len, head_dim]` (key, value per layer); empty
    /// when the graph has no cache.
    pub past: &'a [Vec<f32>],
}

impl LmSession {
    /// Runs one step; fills `logits` with the last position's logits of every row and, when
    /// `presents` is given and the graph has a cache, the new cache tensors.
    pub fn run(
        &mut self,
        step: &Step<'_>,
        logits: &mut Logits,
        presents: Option<&mut Vec<ort::value::DynValue>>,
    ) -> Result<()> {
        let (b, s) = (step.batch, step.seq);
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> =
            Vec::with_capacity(3 + self.past_names.len());
        fn t(shape: Vec<usize>, data: &[i64]) -> Result<TensorRef<'_, i64>> {
            TensorRef::from_array_view((shape, data)).map_err(ort_err("building an input"))
        }
        inputs.push(("input_ids".into(), t(vec![b, s], step.input_ids)?.into()));
        inputs.push((
            "attention_mask".into(),
            t(vec![b, step.past_len + s], step.attention_mask)?.into(),
        ));
        if self.has_position_ids {
            inputs.push((
                "position_ids".into(),
                t(vec![b, s], step.position_ids)?.into(),
            ));
        }
        let empty: Vec<f32> = Vec::new();
        for (i, name) in self.past_names.iter().enumerate() {
            let data = step.past.get(i).unwrap_or(&empty);
            let shape = vec![b, self.heads, step.past_len, self.head_dim];
            let tensor = TensorRef::from_array_view((shape, data.as_slice()))
                .map_err(ort_err("building the past"))?;
            inputs.push((Cow::Borrowed(name.as_str()), tensor.into()));
        }
        let started = std::time::Instant::now();
        let mut outputs = self
            .session
            .run(inputs)
            .map_err(ort_err("running the model"))?;
        self.ort_nanos += started.elapsed().as_nanos() as u64;
        let (shape, data) = outputs["logits"]
            .try_extract_tensor::<f32>()
            .map_err(ort_err("reading the logits"))?;
        let dims: &[i64] = shape;
        if dims.len() != 3 || dims[0] as usize != b || dims[1] < 1 || dims[2] as usize != self.vocab
        {
            return Err(Error::Inference(format!(
                "logits have shape {dims:?}, expected [{b}, seq, {}]",
                self.vocab
            )));
        }
        let out_seq = dims[1] as usize;
        logits.rows = b;
        logits.width = self.vocab;
        logits.data.clear();
        logits.data.reserve(b * self.vocab);
        for r in 0..b {
            let start = (r * out_seq + out_seq - 1) * self.vocab;
            logits
                .data
                .extend_from_slice(&data[start..start + self.vocab]);
        }
        if let Some(presents) = presents {
            // The outputs are kept as ONNX Runtime values (no copy); the scorer gathers the
            // next step's past straight from them.
            let want = b * self.heads * (step.past_len + s) * self.head_dim;
            take_cache(&mut outputs, &self.present_names, want, presents)?;
        }
        Ok(())
    }
}

/// Moves the cache outputs `names` out of `outputs` (no copy), each checked to hold `want`
/// values.
pub(crate) fn take_cache(
    outputs: &mut ort::session::SessionOutputs<'_>,
    names: &[String],
    want: usize,
    cache: &mut Vec<ort::value::DynValue>,
) -> Result<()> {
    cache.clear();
    for name in names {
        let value = outputs
            .remove(name.as_str())
            .ok_or_else(|| Error::Inference(format!("the model returned no {name}")))?;
        let (_, data) = value
            .try_extract_tensor::<f32>()
            .map_err(ort_err("reading the cache"))?;
        if data.len() != want {
            return Err(Error::Inference(format!(
                "{name} has {} values, expected {want}",
                data.len()
            )));
        }
        cache.push(value);
    }
    Ok(())
}
