//! [`StepScorer`] over a format-2 bundle's sessions: shared-prefix decoding.
//!
//! The prompts are prefilled once (left-padded); the prompt cache stays where ONNX Runtime
//! put it and is fed back to every decoding step without a copy. A step runs `users x width`
//! rows, `width` being the most beams any user has at that level: user `u`'s beams are rows
//! `u * width ..`, the rest of its rows are padding whose outputs are dropped. Per row, the
//! only state carried between steps is the row's own decoded tokens' cache (at most
//! `levels - 1` positions), gathered by parent at each step.
//!
//! Without the cache (`ModelOptions::kv_cache(false)`), every level runs the prefill graph
//! over each row's whole sequence again.

use ort::value::DynValue;

use super::beam::{Logits, StepScorer};
use super::prefix_session::{DecodeStep, PrefixSessions};
use super::scorer::{left_pad, positions};
use crate::{Error, Result};

pub(crate) struct SharedPrefixScorer<'s> {
    s: &'s mut PrefixSessions,
    use_cache: bool,
    pad: i64,
    /// Users of the batch, the prompts' padded length, their mask and real lengths.
    users: usize,
    prefix_len: usize,
    prefix_mask: Vec<i64>,
    lens: Vec<i64>,
    /// The prompt cache (the prefill's outputs).
    prefix: Vec<DynValue>,
    /// Per current row: its user and its row in the last run's outputs.
    row_user: Vec<usize>,
    row_slot: Vec<usize>,
    /// Tokens decoded so far (the beam-local cache length).
    steps: usize,
    /// The last decoding step's beam-local cache (every row, padding included).
    local: Vec<DynValue>,
    /// Reused buffers for the next step's inputs.
    past: Vec<Vec<f32>>,
    /// Without the cache: every row's tokens and mask, `rows x len`, left-padded.
    ids: Vec<i64>,
    mask: Vec<i64>,
    len: usize,
}

impl<'s> SharedPrefixScorer<'s> {
    pub fn new(s: &'s mut PrefixSessions, use_cache: bool, pad: i64) -> Self {
        SharedPrefixScorer {
            s,
            use_cache,
            pad,
            users: 0,
            prefix_len: 0,
            prefix_mask: Vec::new(),
            lens: Vec::new(),
            prefix: Vec::new(),
            row_user: Vec::new(),
            row_slot: Vec::new(),
            steps: 0,
            local: Vec::new(),
            past: Vec::new(),
            ids: Vec::new(),
            mask: Vec::new(),
            len: 0,
        }
    }

    /// The prefill graph over the current `ids` / `mask` (`rows x len`).
    fn run_prefill(&mut self, rows: usize, out: &mut Logits) -> Result<()> {
        let pos = positions(&self.mask, rows, self.len, self.len);
        let mut cache = std::mem::take(&mut self.prefix);
        let r = self.s.prefill(
            [rows, self.len],
            &self.ids,
            &self.mask,
            &pos,
            out,
            &mut cache,
        );
        self.prefix = cache;
        r
    }

    /// The next step's beam-local past: row `slot[j]` gets parent `parents[j]`'s cache.
    fn gather_past(&mut self, parents: &[usize], slot: &[usize], rows: usize) -> Result<()> {
        let block = self.s.heads * self.steps * self.s.head_dim;
        self.past.resize_with(2 * self.s.layers, Vec::new);
        for (i, dst) in self.past.iter_mut().enumerate() {
            dst.clear();
            dst.resize(rows * block, 0.0);
            if block == 0 {
                continue;
            }
            let (_, src) = self.local[i]
                .try_extract_tensor::<f32>()
                .map_err(|e| Error::Inference(format!("reading the cache: {e}")))?;
            for (&p, &to) in parents.iter().zip(slot) {
                let from = self.row_slot[p];
                dst[to * block..(to + 1) * block]
                    .copy_from_slice(&src[from * block..(from + 1) * block]);
            }
        }
        Ok(())
    }

    fn extend_without_cache(
        &mut self,
        parents: &[usize],
        tokens: &[i64],
        out: &mut Logits,
    ) -> Result<()> {
        let (old, n) = (self.len, parents.len());
        let mut ids = Vec::with_capacity(n * (old + 1));
        let mut mask = Vec::with_capacity(n * (old + 1));
        for (&p, &t) in parents.iter().zip(tokens) {
            ids.extend_from_slice(&self.ids[p * old..(p + 1) * old]);
            ids.push(t);
            mask.extend_from_slice(&self.mask[p * old..(p + 1) * old]);
            mask.push(1);
        }
        self.ids = ids;
        self.mask = mask;
        self.len = old + 1;
        self.run_prefill(n, out)
    }
}

impl StepScorer for SharedPrefixScorer<'_> {
    fn prefill(&mut self, prompts: &[Vec<i64>], out: &mut Logits) -> Result<()> {
        self.users = prompts.len();
        let len = left_pad(prompts, self.pad, &mut self.ids, &mut self.mask);
        self.len = len;
        self.lens.clear();
        self.lens.extend(prompts.iter().map(|p| p.len() as i64));
        self.prefix_len = len;
        self.prefix_mask.clone_from(&self.mask);
        self.row_user = (0..self.users).collect();
        self.row_slot = (0..self.users).collect();
        self.steps = 0;
        self.local.clear();
        self.run_prefill(self.users, out)
    }

    fn extend(&mut self, parents: &[usize], tokens: &[i64], out: &mut Logits) -> Result<()> {
        if !self.use_cache {
            return self.extend_without_cache(parents, tokens, out);
        }
        let users = self.users;
        let mut count = vec![0usize; users];
        let user: Vec<usize> = parents.iter().map(|&p| self.row_user[p]).collect();
        for &u in &user {
            count[u] += 1;
        }
        let width = count.iter().copied().max().unwrap_or(0).max(1);
        let rows = users * width;
        let mut rank = vec![0usize; users];
        let slot: Vec<usize> = user
            .iter()
            .map(|&u| {
                rank[u] += 1;
                u * width + rank[u] - 1
            })
            .collect();
        let mut ids = vec![self.pad; rows];
        for (&s, &t) in slot.iter().zip(tokens) {
            ids[s] = t;
        }
        let step = self.steps as i64;
        let pos: Vec<i64> = (0..rows).map(|r| self.lens[r / width] + step).collect();
        self.gather_past(parents, &slot, rows)?;
        let mut cache = std::mem::take(&mut self.local);
        let result = self.s.decode(
            &DecodeStep {
                users,
                width,
                prefix_len: self.prefix_len,
                past_len: self.steps,
                input_ids: &ids,
                position_ids: &pos,
                prefix_mask: &self.prefix_mask,
                prefix: &self.prefix,
                past: &self.past,
                keep: &slot,
            },
            out,
            &mut cache,
        );
        self.local = cache;
        result?;
        self.row_user = user;
        self.row_slot = slot;
        self.steps += 1;
        Ok(())
    }
}
