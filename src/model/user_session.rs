//! The user encoder of a format-3 bundle (docs/model-bundle.md, "Format 3: the hybrid
//! re-rank"): `user.onnx` maps the vectors of a user's last history items to a user vector,
//! which the re-rank dots with each beam candidate's stored vector.
//!
//! inputs `history_vectors` float32 `[batch, T, dim]` (right-aligned: oldest first, newest
//! last, padding on the left) and `history_mask` float32 `[batch, T]` (1 = an item); output
//! `user_vector` float32 `[batch, dim]`. `T` is the manifest's `rerank.max_history`.

use std::borrow::Cow;
use std::path::Path;

use ort::session::{Session, SessionInputValue};
use ort::value::{TensorElementType, TensorRef};

use super::library::Runtime;
use super::options::ModelOptions;
use super::session::{commit, ort_err};
use crate::{Error, Result};

/// Widest user vector accepted (a re-rank vector is a stored item vector).
pub(crate) const MAX_USER_DIM: usize = 65_536;

pub(crate) struct UserSession {
    session: Session,
    /// History positions the graph takes.
    pub positions: usize,
    /// Width of the vectors in and out.
    pub dim: usize,
    pub ort_nanos: u64,
}

/// Builds the session and checks the graph's contract: the two inputs, the output, float32,
/// `T = positions` and a fixed `dim` where the graph states them.
pub(crate) fn open(
    rt: &Runtime,
    path: &Path,
    positions: usize,
    opts: &ModelOptions,
) -> Result<UserSession> {
    let session = commit(rt, path, opts)?;
    let bad = |reason: String| Error::InvalidBundle {
        path: path.to_path_buf(),
        reason,
    };
    let float = |name: &str, outlets: &[ort::value::Outlet], what: &str| -> Result<Vec<i64>> {
        let o = outlets
            .iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| bad(format!("the user encoder has no {what} {name:?}")))?;
        if o.dtype().tensor_type() != Some(TensorElementType::Float32) {
            return Err(bad(format!("{what} {name:?} is not float32")));
        }
        Ok(o.dtype()
            .tensor_shape()
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default())
    };
    let vecs = float("history_vectors", session.inputs(), "input")?;
    let mask = float("history_mask", session.inputs(), "input")?;
    let out = float("user_vector", session.outputs(), "output")?;
    if let Some(extra) = session
        .inputs()
        .iter()
        .find(|o| o.name() != "history_vectors" && o.name() != "history_mask")
    {
        return Err(bad(format!(
            "the user encoder has an input {:?} this database does not know how to feed",
            extra.name()
        )));
    }
    if vecs.len() != 3 || mask.len() != 2 || out.len() != 2 {
        return Err(bad(format!(
            "history_vectors {vecs:?}, history_mask {mask:?}, user_vector {out:?}: expected ranks 3, 2 and 2"
        )));
    }
    for (what, t) in [("history_vectors", vecs[1]), ("history_mask", mask[1])] {
        if t >= 0 && t as usize != positions {
            return Err(bad(format!(
                "{what} takes {t} history positions, the manifest's rerank.max_history is {positions}"
            )));
        }
    }
    let dim = match (vecs[2], out[1]) {
        (a, b) if a > 0 && (b < 0 || a == b) => a as usize,
        (a, b) => {
            return Err(bad(format!(
                "history_vectors' width is {a} and user_vector's {b}: the user encoder needs one fixed width"
            )))
        }
    };
    if dim > MAX_USER_DIM {
        return Err(bad(format!(
            "vector width {dim} is over the limit of {MAX_USER_DIM}"
        )));
    }
    Ok(UserSession {
        session,
        positions,
        dim,
        ort_nanos: 0,
    })
}

impl UserSession {
    /// User vectors of `histories` (each: its items' vectors, oldest first; the last
    /// `positions` are used). Every vector must be `dim` wide.
    pub fn user_vectors(&mut self, histories: &[Vec<&[f32]>]) -> Result<Vec<Vec<f32>>> {
        let (b, t, d) = (histories.len(), self.positions, self.dim);
        if b == 0 {
            return Ok(Vec::new());
        }
        let mut x = vec![0f32; b * t * d];
        let mut mask = vec![0f32; b * t];
        for (i, h) in histories.iter().enumerate() {
            let h = &h[h.len().saturating_sub(t)..];
            let first = t - h.len();
            for (j, v) in h.iter().enumerate() {
                if v.len() != d {
                    return Err(Error::Inference(format!(
                        "a history vector is {} wide, the user encoder takes {d}",
                        v.len()
                    )));
                }
                let at = (i * t + first + j) * d;
                x[at..at + d].copy_from_slice(v);
                mask[i * t + first + j] = 1.0;
            }
        }
        let inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
            (
                "history_vectors".into(),
                TensorRef::from_array_view((vec![b, t, d], x.as_slice()))
                    .map_err(ort_err("building history_vectors"))?
                    .into(),
            ),
            (
                "history_mask".into(),
                TensorRef::from_array_view((vec![b, t], mask.as_slice()))
                    .map_err(ort_err("building history_mask"))?
                    .into(),
            ),
        ];
        let started = std::time::Instant::now();
        let outputs = self
            .session
            .run(inputs)
            .map_err(ort_err("running the user encoder"))?;
        let (shape, data) = outputs["user_vector"]
            .try_extract_tensor::<f32>()
            .map_err(ort_err("reading user_vector"))?;
        let dims: &[i64] = shape;
        if dims != [b as i64, d as i64] {
            return Err(Error::Inference(format!(
                "user_vector has shape {dims:?}, expected [{b}, {d}]"
            )));
        }
        let out = data.chunks_exact(d).map(<[f32]>::to_vec).collect();
        self.ort_nanos += started.elapsed().as_nanos() as u64;
        Ok(out)
    }
}
