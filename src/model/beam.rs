//! Beam search constrained by the trie of live semantic IDs (docs/model-bundle.md,
//! "Constrained beam search").
//!
//! The search is written against [`StepScorer`], a narrow interface that returns next-token
//! logits for a batch of rows: ONNX Runtime implements it in `scorer.rs`; the tests below use a
//! deterministic scorer on a hand-made trie.

use std::cmp::Ordering;

use crate::sid::Trie;
use crate::Result;

/// Next-token logits of a batch: `rows x width`, row-major. Column `c` is the logit of token
/// id `first + c`: a scorer may return only a slice of the vocabulary (format-2 graphs return
/// the ID tokens only) together with each row's log-sum-exp over the whole vocabulary in
/// `lse`; when `lse` is empty, the row holds the whole vocabulary and the search computes it.
#[derive(Debug, Default)]
pub(crate) struct Logits {
    pub rows: usize,
    pub width: usize,
    pub first: usize,
    pub data: Vec<f32>,
    pub lse: Vec<f32>,
}

impl Logits {
    pub fn row(&self, r: usize) -> &[f32] {
        self.data
            .get(r * self.width..(r + 1) * self.width)
            .unwrap_or(&[])
    }

    /// `ln(sum(exp(logits)))` of row `r` over the whole vocabulary.
    fn log_normalizer(&self, r: usize) -> f64 {
        match self.lse.get(r) {
            Some(&v) => f64::from(v),
            None => log_sum_exp(self.row(r)),
        }
    }

    /// The logit of token id `token` in row `row` (a row from [`Logits::row`]).
    fn logit(&self, row: &[f32], token: usize) -> Option<f32> {
        row.get(token.checked_sub(self.first)?).copied()
    }
}

/// What the search needs from a language model.
pub(crate) trait StepScorer {
    /// Runs `prompts` (token ids); row `i` of `out` = next-token logits after prompt `i`.
    fn prefill(&mut self, prompts: &[Vec<i64>], out: &mut Logits) -> Result<()>;
    /// Row `j` of the new batch = previous row `parents[j]` extended by `tokens[j]`; fills `out`
    /// with the next-token logits of each new row.
    fn extend(&mut self, parents: &[usize], tokens: &[i64], out: &mut Logits) -> Result<()>;
}

/// How ID tokens map into the vocabulary.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TokenLayout {
    pub first_token_id: u32,
    pub codes: usize,
}

impl TokenLayout {
    fn token(&self, level: usize, code: u16) -> usize {
        self.first_token_id as usize + level * self.codes + usize::from(code)
    }
}

/// One request of a batch.
pub(crate) struct Request<'a> {
    pub prompt: Vec<i64>,
    /// Item ids to skip (sorted ascending).
    pub exclude: &'a [u64],
    pub k: usize,
}

/// One finished answer: items with the score of their tuple, best first.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Answer {
    pub items: Vec<(u64, f64)>,
    /// The finished tuples and their scores, best first (for diagnostics and tests).
    pub beams: Vec<(Vec<u16>, f64)>,
}

#[derive(Clone, Debug)]
struct Beam {
    req: usize,
    codes: Vec<u16>,
    score: f64,
    /// Row of the scorer's current batch holding this beam's logits.
    row: usize,
}

/// Best first; equal scores: smaller tuple first.
fn better(a: &Beam, b: &Beam) -> Ordering {
    b.score
        .partial_cmp(&a.score)
        .unwrap_or(Ordering::Equal)
        .then_with(|| a.codes.cmp(&b.codes))
}

/// `ln(sum(exp(row)))`, accumulated in f64.
fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return f64::from(max);
    }
    let max = f64::from(max);
    let sum: f64 = row.iter().map(|&x| (f64::from(x) - max).exp()).sum();
    max + sum.ln()
}

/// Beams kept per level: `beam_width` at every level but the last, which keeps `final_width`
/// finished tuples (the hybrid re-rank takes more candidates than the search needs beams).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Widths {
    pub beam: usize,
    pub last: usize,
}

impl Widths {
    /// The same width at every level.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn uniform(beam: usize) -> Widths {
        Widths { beam, last: beam }
    }
}

/// Keeps the `width` best of `cands` (by [`better`]) that `rejected` does not drop, sorted best
/// first. `rejected` runs only on candidates in the running, best first in rounds: once per
/// kept candidate when it drops nothing (the common case), a few more when it does.
fn keep_best(cands: &mut Vec<Beam>, width: usize, rejected: impl Fn(&Beam) -> bool) {
    let mut kept = 0; // cands[..kept] are accepted
    while kept < width && kept < cands.len() {
        let need = width - kept;
        let rest = &mut cands[kept..];
        if rest.len() > need {
            rest.select_nth_unstable_by(need - 1, better);
        }
        let (start, end) = (kept, kept + need.min(rest.len()));
        for i in start..end {
            if !rejected(&cands[i]) {
                cands.swap(i, kept);
                kept += 1;
            }
        }
        cands.drain(kept..end);
    }
    cands.truncate(kept);
    cands.sort_by(better);
}

/// Runs the constrained search for every request of the batch.
pub(crate) fn search(
    scorer: &mut dyn StepScorer,
    trie: &Trie,
    layout: TokenLayout,
    widths: Widths,
    requests: &[Request<'_>],
) -> Result<Vec<Answer>> {
    let levels = trie.levels();
    let mut answers = vec![Answer::default(); requests.len()];
    if requests.is_empty() || levels == 0 || trie.is_empty() {
        return Ok(answers);
    }
    let prompts: Vec<Vec<i64>> = requests.iter().map(|r| r.prompt.clone()).collect();
    let mut logits = Logits::default();
    scorer.prefill(&prompts, &mut logits)?;
    let mut beams: Vec<Beam> = (0..requests.len())
        .map(|req| Beam {
            req,
            codes: Vec::new(),
            score: 0.0,
            row: req,
        })
        .collect();
    for level in 0..levels {
        let mut next: Vec<Beam> =
            Vec::with_capacity(beams.len() * widths.beam.max(widths.last).max(1));
        let mut start = 0;
        while start < beams.len() {
            let req = beams[start].req;
            let end = start + beams[start..].iter().take_while(|b| b.req == req).count();
            let mut cands = Vec::new();
            let exclude = requests[req].exclude;
            let last = level + 1 == levels;
            let width = if last { widths.last } else { widths.beam }.max(1);
            for beam in &beams[start..end] {
                let row = logits.row(beam.row);
                let lse = logits.log_normalizer(beam.row);
                for &code in trie.allowed_next(&beam.codes) {
                    let Some(logit) = logits.logit(row, layout.token(level, code)) else {
                        continue;
                    };
                    let mut codes = Vec::with_capacity(levels);
                    codes.extend_from_slice(&beam.codes);
                    codes.push(code);
                    cands.push(Beam {
                        req,
                        codes,
                        score: beam.score + f64::from(logit) - lse,
                        row: beam.row,
                    });
                }
            }
            // A prefix whose every item is excluded (at any level, a finished tuple included)
            // would take a beam and give nothing: it is not a candidate.
            keep_best(&mut cands, width, |b| {
                !exclude.is_empty()
                    && !trie.any_item_under(&b.codes, |i| exclude.binary_search(&i).is_err())
            });
            next.extend(cands);
            start = end;
        }
        beams = next;
        if level + 1 < levels && !beams.is_empty() {
            let parents: Vec<usize> = beams.iter().map(|b| b.row).collect();
            let tokens: Vec<i64> = beams
                .iter()
                .map(|b| layout.token(level, b.codes[level]) as i64)
                .collect();
            scorer.extend(&parents, &tokens, &mut logits)?;
            for (j, b) in beams.iter_mut().enumerate() {
                b.row = j;
            }
        }
    }
    for beam in beams {
        let answer = &mut answers[beam.req];
        let request = &requests[beam.req];
        for &item in trie.items(&beam.codes) {
            if answer.items.len() >= request.k {
                break;
            }
            if request.exclude.binary_search(&item).is_ok()
                || answer.items.iter().any(|&(i, _)| i == item)
            {
                continue;
            }
            answer.items.push((item, beam.score));
        }
        answer.beams.push((beam.codes, beam.score));
    }
    Ok(answers)
}

#[cfg(test)]
mod tests;
