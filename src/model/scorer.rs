//! [`StepScorer`] over an ONNX Runtime session: left-padded batches, with the KV cache
//! (prefill once, then one token per row and level) or without it (the whole sequence again at
//! every level).

use super::beam::{Logits, StepScorer};
use super::session::{LmSession, Step};
use crate::Result;

/// Positions of the last `seq` columns of each row of a `rows x len` left-padded mask:
/// `cumsum(mask) - 1`, clamped at 0.
pub(crate) fn positions(mask: &[i64], rows: usize, len: usize, seq: usize) -> Vec<i64> {
    let mut pos = Vec::with_capacity(rows * seq);
    for r in 0..rows {
        let row = &mask[r * len..(r + 1) * len];
        let mut sum = 0i64;
        for (c, &m) in row.iter().enumerate() {
            sum += m;
            if c >= len - seq {
                pos.push((sum - 1).max(0));
            }
        }
    }
    pos
}

/// Left-pads `prompts` with `pad` into `ids` and their attention mask into `mask` (both
/// `prompts x len`, cleared first); returns `len`, the longest prompt's length (at least 1).
pub(crate) fn left_pad(
    prompts: &[Vec<i64>],
    pad: i64,
    ids: &mut Vec<i64>,
    mask: &mut Vec<i64>,
) -> usize {
    let len = prompts.iter().map(Vec::len).max().unwrap_or(0).max(1);
    ids.clear();
    mask.clear();
    for p in prompts {
        let n = len - p.len();
        ids.extend(std::iter::repeat_n(pad, n));
        ids.extend_from_slice(p);
        mask.extend(std::iter::repeat_n(0, n));
        mask.extend(std::iter::repeat_n(1, p.len()));
    }
    len
}

pub(crate) struct OrtScorer<'s> {
    session: &'s mut LmSession,
    use_cache: bool,
    pad: i64,
    rows: usize,
    /// Attention mask of the current rows, `rows x mask_len`.
    mask: Vec<i64>,
    mask_len: usize,
    /// Without the cache: the current rows' tokens, `rows x mask_len` (left-padded).
    ids: Vec<i64>,
    /// With the cache: the current rows' cache tensors (ONNX Runtime's own outputs).
    cache: Vec<ort::value::DynValue>,
    /// Gathered past for the next step (reused buffers).
    past: Vec<Vec<f32>>,
}

impl<'s> OrtScorer<'s> {
    pub fn new(session: &'s mut LmSession, use_cache: bool, pad: i64) -> Self {
        let use_cache = use_cache && session.has_cache;
        OrtScorer {
            session,
            use_cache,
            pad,
            rows: 0,
            mask: Vec::new(),
            mask_len: 0,
            ids: Vec::new(),
            cache: Vec::new(),
            past: Vec::new(),
        }
    }

    /// A full (no past) run over the current `ids`/`mask`.
    fn run_full(&mut self, out: &mut Logits) -> Result<()> {
        let (rows, len) = (self.rows, self.mask_len);
        let pos = positions(&self.mask, rows, len, len);
        let empty = self.empty_past();
        let step = Step {
            batch: rows,
            seq: len,
            past_len: 0,
            input_ids: &self.ids,
            attention_mask: &self.mask,
            position_ids: &pos,
            past: &empty,
        };
        let presents = if self.use_cache {
            Some(&mut self.cache)
        } else {
            None
        };
        self.session.run(&step, out, presents)
    }

    fn empty_past(&self) -> Vec<Vec<f32>> {
        if self.session.has_cache {
            vec![Vec::new(); 2 * self.session.layers]
        } else {
            Vec::new()
        }
    }
}

impl StepScorer for OrtScorer<'_> {
    fn prefill(&mut self, prompts: &[Vec<i64>], out: &mut Logits) -> Result<()> {
        self.rows = prompts.len();
        self.mask_len = left_pad(prompts, self.pad, &mut self.ids, &mut self.mask);
        self.run_full(out)
    }

    fn extend(&mut self, parents: &[usize], tokens: &[i64], out: &mut Logits) -> Result<()> {
        let (old_len, n) = (self.mask_len, parents.len());
        let new_len = old_len + 1;
        let mut mask = Vec::with_capacity(n * new_len);
        let mut ids = Vec::with_capacity(if self.use_cache { 0 } else { n * new_len });
        for (&p, &t) in parents.iter().zip(tokens) {
            mask.extend_from_slice(&self.mask[p * old_len..(p + 1) * old_len]);
            mask.push(1);
            if !self.use_cache {
                ids.extend_from_slice(&self.ids[p * old_len..(p + 1) * old_len]);
                ids.push(t);
            }
        }
        self.mask = mask;
        self.mask_len = new_len;
        self.rows = n;
        if !self.use_cache {
            self.ids = ids;
            return self.run_full(out);
        }
        // Gather each parent's cache block into the new batch's past.
        let block = self.session.heads * old_len * self.session.head_dim;
        self.past.resize_with(self.cache.len(), Vec::new);
        for (value, dst) in self.cache.iter().zip(self.past.iter_mut()) {
            let (_, src) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| crate::Error::Inference(format!("reading the cache: {e}")))?;
            dst.clear();
            dst.reserve(n * block);
            for &p in parents {
                dst.extend_from_slice(&src[p * block..(p + 1) * block]);
            }
        }
        let pos = positions(&self.mask, n, new_len, 1);
        let step = Step {
            batch: n,
            seq: 1,
            past_len: old_len,
            input_ids: tokens,
            attention_mask: &self.mask,
            position_ids: &pos,
            past: &self.past,
        };
        self.session.run(&step, out, Some(&mut self.cache))
    }
}
