//! The two ONNX Runtime sessions of a format-2 bundle (shared-prefix decoding,
//! docs/model-bundle.md "Format 2"): the prefill graph, run once per user over the prompt, and
//! the decoding-step graph, run once per level over every user's beams against that user's
//! one copy of the prompt cache. Both return only the ID tokens' logits and each row's
//! log-sum-exp over the whole vocabulary.

use std::borrow::Cow;
use std::path::Path;

use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, TensorRef};

use super::beam::Logits;
use super::library::Runtime;
use super::manifest::Manifest;
use super::options::ModelOptions;
use super::session::{commit, ort_err, take_cache};
use crate::{Error, Result};

/// The prefill and decode sessions and the shape facts of their graphs.
pub(crate) struct PrefixSessions {
    prefill: Session,
    decode: Session,
    pub layers: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Token id of `id_logits` column 0, and its width.
    pub id_start: usize,
    pub id_count: usize,
    /// `present.{i}.key/value`: the cache outputs of both graphs.
    present_names: Vec<String>,
    /// `prefix_key_values.{i}.key/value`: the decode graph's prompt-cache inputs.
    prefix_names: Vec<String>,
    /// `past_key_values.{i}.key/value`: the decode graph's beam-local cache inputs.
    past_names: Vec<String>,
    /// Time spent inside ONNX Runtime (runs and reading their outputs), nanoseconds.
    pub ort_nanos: u64,
}

/// One decoding step: `users x width` rows (row `r` belongs to user `r / width`).
pub(crate) struct DecodeStep<'a> {
    pub users: usize,
    pub width: usize,
    pub prefix_len: usize,
    pub past_len: usize,
    pub input_ids: &'a [i64],
    pub position_ids: &'a [i64],
    /// `users x prefix_len`, the prompts' attention mask.
    pub prefix_mask: &'a [i64],
    /// The prefill's cache outputs, fed back without a copy.
    pub prefix: &'a [DynValue],
    /// `2 * layers` tensors `[rows, heads, past_len, head_dim]`.
    pub past: &'a [Vec<f32>],
    /// Which output rows to keep, in order (the real beams; the others pad users to `width`).
    pub keep: &'a [usize],
}

/// Builds both sessions and checks their graphs against the manifest.
pub(crate) fn open(
    rt: &Runtime,
    prefill: &Path,
    decode: &Path,
    m: &Manifest,
    opts: &ModelOptions,
) -> Result<PrefixSessions> {
    let layers = m.graph.num_layers;
    let kinds = |prefix: &str| -> Vec<String> {
        (0..layers)
            .flat_map(|i| ["key", "value"].map(|k| format!("{prefix}.{i}.{k}")))
            .collect()
    };
    let present_names = kinds("present");
    let prefix_names = kinds("prefix_key_values");
    let past_names = kinds("past_key_values");
    let pre = commit(rt, prefill, opts)?;
    let mut want_in = vec!["input_ids", "attention_mask", "position_ids"];
    let outs: Vec<&str> = ["id_logits", "logsumexp"]
        .into_iter()
        .chain(present_names.iter().map(String::as_str))
        .collect();
    check(&pre, prefill, &want_in, &outs)?;
    let dec = commit(rt, decode, opts)?;
    want_in = vec!["input_ids", "position_ids", "prefix_attention_mask"];
    want_in.extend(prefix_names.iter().map(String::as_str));
    want_in.extend(past_names.iter().map(String::as_str));
    check(&dec, decode, &want_in, &outs)?;
    let ids = m.graph.id_logits.ok_or_else(|| Error::InvalidBundle {
        path: prefill.to_path_buf(),
        reason: "the manifest has no graph.id_logits".into(),
    })?;
    Ok(PrefixSessions {
        prefill: pre,
        decode: dec,
        layers,
        heads: m.graph.num_heads,
        head_dim: m.graph.head_dim,
        id_start: ids.start,
        id_count: ids.count,
        present_names,
        prefix_names,
        past_names,
        ort_nanos: 0,
    })
}

/// The graph's inputs are exactly `inputs` (int64 for the first ones named `*_ids` or
/// `*mask`, float32 for caches) and it has every output of `outputs`.
fn check(session: &Session, path: &Path, inputs: &[&str], outputs: &[&str]) -> Result<()> {
    let bad = |reason: String| Error::InvalidBundle {
        path: path.to_path_buf(),
        reason,
    };
    let ty = |name: &str| {
        if name.ends_with("_ids") || name.ends_with("mask") {
            TensorElementType::Int64
        } else {
            TensorElementType::Float32
        }
    };
    for name in inputs {
        match session.inputs().iter().find(|o| o.name() == *name) {
            None => return Err(bad(format!("the graph has no input {name:?}"))),
            Some(o) if o.dtype().tensor_type() != Some(ty(name)) => {
                return Err(bad(format!(
                    "input {name:?} has type {:?}, expected {:?}",
                    o.dtype().tensor_type(),
                    ty(name)
                )))
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = session
        .inputs()
        .iter()
        .find(|o| !inputs.contains(&o.name()))
    {
        return Err(bad(format!(
            "the graph has an input {:?} this database does not know how to feed",
            extra.name()
        )));
    }
    for name in outputs {
        match session.outputs().iter().find(|o| o.name() == *name) {
            None => return Err(bad(format!("the graph has no output {name:?}"))),
            Some(o) if o.dtype().tensor_type() != Some(TensorElementType::Float32) => {
                return Err(bad(format!("output {name:?} is not float32")))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn ints<'a>(shape: Vec<usize>, data: &'a [i64]) -> Result<TensorRef<'a, i64>> {
    TensorRef::from_array_view((shape, data)).map_err(ort_err("building an input"))
}

impl PrefixSessions {
    /// Prefills `batch` left-padded prompts of `seq` tokens (`[batch, seq]`): `out` gets the last position's ID
    /// logits and log-sum-exp per row, `cache` the prompt cache (`[batch, heads, seq, hd]`).
    pub fn prefill(
        &mut self,
        [batch, seq]: [usize; 2],
        input_ids: &[i64],
        attention_mask: &[i64],
        position_ids: &[i64],
        out: &mut Logits,
        cache: &mut Vec<DynValue>,
    ) -> Result<()> {
        let inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
            (
                "input_ids".into(),
                ints(vec![batch, seq], input_ids)?.into(),
            ),
            (
                "attention_mask".into(),
                ints(vec![batch, seq], attention_mask)?.into(),
            ),
            (
                "position_ids".into(),
                ints(vec![batch, seq], position_ids)?.into(),
            ),
        ];
        let started = std::time::Instant::now();
        let mut outputs = self
            .prefill
            .run(inputs)
            .map_err(ort_err("running the prefill graph"))?;
        let keep: Vec<usize> = (0..batch).collect();
        read_ids(&outputs, batch, self.id_start, self.id_count, &keep, out)?;
        take_cache(
            &mut outputs,
            &self.present_names,
            batch * self.heads * seq * self.head_dim,
            cache,
        )?;
        self.ort_nanos += started.elapsed().as_nanos() as u64;
        Ok(())
    }

    /// Runs one decoding step: `out` gets the kept rows' ID logits and log-sum-exp, `cache`
    /// the rows' new beam-local cache (`[rows, heads, past_len + 1, hd]`, every row).
    pub fn decode(
        &mut self,
        step: &DecodeStep<'_>,
        out: &mut Logits,
        cache: &mut Vec<DynValue>,
    ) -> Result<()> {
        let rows = step.users * step.width;
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> =
            Vec::with_capacity(3 + self.prefix_names.len() + self.past_names.len());
        inputs.push((
            "input_ids".into(),
            ints(vec![rows, 1], step.input_ids)?.into(),
        ));
        inputs.push((
            "position_ids".into(),
            ints(vec![rows, 1], step.position_ids)?.into(),
        ));
        inputs.push((
            "prefix_attention_mask".into(),
            ints(vec![step.users, step.prefix_len], step.prefix_mask)?.into(),
        ));
        for (name, value) in self.prefix_names.iter().zip(step.prefix) {
            inputs.push((Cow::Borrowed(name.as_str()), SessionInputValue::from(value)));
        }
        let empty: Vec<f32> = Vec::new();
        for (i, name) in self.past_names.iter().enumerate() {
            let data = step.past.get(i).unwrap_or(&empty);
            let shape = vec![rows, self.heads, step.past_len, self.head_dim];
            let tensor = TensorRef::from_array_view((shape, data.as_slice()))
                .map_err(ort_err("building the past"))?;
            inputs.push((Cow::Borrowed(name.as_str()), tensor.into()));
        }
        let started = std::time::Instant::now();
        let mut outputs = self
            .decode
            .run(inputs)
            .map_err(ort_err("running the decoding graph"))?;
        read_ids(&outputs, rows, self.id_start, self.id_count, step.keep, out)?;
        take_cache(
            &mut outputs,
            &self.present_names,
            rows * self.heads * (step.past_len + 1) * self.head_dim,
            cache,
        )?;
        self.ort_nanos += started.elapsed().as_nanos() as u64;
        Ok(())
    }
}

/// Copies the `keep` rows of `id_logits` / `logsumexp` (`rows` of each) into `out`.
fn read_ids(
    outputs: &ort::session::SessionOutputs<'_>,
    rows: usize,
    id_start: usize,
    id_count: usize,
    keep: &[usize],
    out: &mut Logits,
) -> Result<()> {
    let (shape, ids) = outputs["id_logits"]
        .try_extract_tensor::<f32>()
        .map_err(ort_err("reading id_logits"))?;
    let dims: &[i64] = shape;
    if dims != [rows as i64, id_count as i64] {
        return Err(Error::Inference(format!(
            "id_logits have shape {dims:?}, expected [{rows}, {id_count}]"
        )));
    }
    let (shape, lse) = outputs["logsumexp"]
        .try_extract_tensor::<f32>()
        .map_err(ort_err("reading logsumexp"))?;
    let dims: &[i64] = shape;
    if dims != [rows as i64] {
        return Err(Error::Inference(format!(
            "logsumexp has shape {dims:?}, expected [{rows}]"
        )));
    }
    out.rows = keep.len();
    out.width = id_count;
    out.first = id_start;
    out.data.clear();
    out.lse.clear();
    out.data.reserve(keep.len() * id_count);
    if let Some(&r) = keep.iter().find(|&&r| r >= rows) {
        return Err(Error::Inference(format!("row {r} kept of {rows}")));
    }
    for &r in keep {
        out.data
            .extend_from_slice(&ids[r * id_count..(r + 1) * id_count]);
        out.lse.push(lse[r]);
    }
    Ok(())
}
