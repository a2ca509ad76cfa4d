//! The hybrid re-rank of a format-3 bundle (docs/model-bundle.md, "Format 3: the hybrid
//! re-rank"): the beam's first `candidates` items are re-scored with
//! `lm score + weight * dot(user vector, item vector)` and the best `k` kept. The user vector
//! is the bundle's user encoder over the stored vectors of the user's most recent history
//! items; item vectors are the stored vectors named `rerank.vector`.

use super::generate::Prepared;
use super::Db;
use crate::ann::{normalize, AnnIndex};
use crate::model::beam::Answer;
use crate::model::Model;
use crate::store::{keys, records, TreeId};
use crate::{Error, Result};

impl Db {
    /// Checks that this database stores the vectors the model's re-rank reads, at the width of
    /// its user encoder.
    pub(super) fn check_rerank_vectors(&self, model: &Model) -> Result<()> {
        let Some((r, dim)) = model.rerank() else {
            return Ok(());
        };
        let stored = self.inner.derived.read().dims.get(&r.vector).copied();
        match stored {
            Some(d) if d == dim => Ok(()),
            Some(d) => Err(Error::InvalidBundle {
                path: model.dir.clone(),
                reason: format!(
                    "the re-rank's user encoder is {dim} wide but this database stores vector {:?} with dimension {d}: import the bundle's items.jsonl vectors, or attach with ModelOptions::rerank(false) (CLI: --no-rerank)",
                    r.vector
                ),
            }),
            None => Err(Error::InvalidBundle {
                path: model.dir.clone(),
                reason: format!(
                    "the re-rank reads the stored item vector {:?}, which this database has none of: import the bundle's items.jsonl with its vectors, or attach with ModelOptions::rerank(false) (CLI: --no-rerank)",
                    r.vector
                ),
            }),
        }
    }

    /// Replaces each answer's candidates by the fused top `k` (no-op without a re-rank).
    pub(super) fn rerank(
        &self,
        model: &Model,
        prepared: &[Prepared],
        answers: &mut [Answer],
        k: usize,
    ) -> Result<()> {
        let Some((r, dim)) = model.rerank() else {
            return Ok(());
        };
        let stored = self.inner.derived.read().dims.get(&r.vector).copied();
        if stored != Some(dim) {
            return Err(Error::UnknownVector {
                name: r.vector.clone(),
            });
        }
        let mut histories = Vec::with_capacity(prepared.len());
        for p in prepared {
            let newest_first = p.history.iter().rev().copied();
            histories.push(self.recent_vectors(newest_first, &r.vector, dim, r.max_history)?);
        }
        let views: Vec<Vec<&[f32]>> = histories
            .iter()
            .map(|h| h.iter().map(Vec::as_slice).collect())
            .collect();
        let users = model.user_vectors(&views)?;
        for (answer, user) in answers.iter_mut().zip(&users) {
            let mut dense = Vec::with_capacity(answer.items.len());
            for &(id, _) in &answer.items {
                dense.push(
                    self.stored_vector(id, &r.vector, dim)?
                        .map_or(0.0, |v| dot(user, &v)),
                );
            }
            answer.items = fuse(&answer.items, &dense, r.weight, k);
        }
        Ok(())
    }

    /// The attached model's user vector for a stored `user`: its user encoder (format 3,
    /// re-rank in use) over the stored vectors of the user's most recent history items, as the
    /// re-rank and the ANN fallback compute it. `None` when the model has no re-rank in use,
    /// the user has no history or none of its recent items has the vector;
    /// [`Error::NoModel`] without a model.
    pub fn user_vector(&self, user: &str) -> Result<Option<Vec<f32>>> {
        super::validate::validate_key("user", user, &self.inner.config.limits)?;
        let model = self.attached()?;
        match self.load_history_ids(user)? {
            Some((_, ids)) => self.encode_history(&model, &ids),
            None => Ok(None),
        }
    }

    /// `model`'s user encoder over `history`'s most recent items that have the re-rank's
    /// vector; `None` without a re-rank in use or without such an item.
    fn encode_history(&self, model: &Model, history: &[u64]) -> Result<Option<Vec<f32>>> {
        let Some((r, dim)) = model.rerank() else {
            return Ok(None);
        };
        let newest_first = history.iter().rev().copied();
        let recent = self.recent_vectors(newest_first, &r.vector, dim, r.max_history)?;
        if recent.is_empty() {
            return Ok(None);
        }
        let views = vec![recent.iter().map(Vec::as_slice).collect()];
        Ok(model.user_vectors(&views)?.pop())
    }

    /// With an attached model whose re-rank reads `index`'s vector (format 3), the model's
    /// user encoder over `history`'s most recent items that have that vector, normalised: the
    /// query of the ANN fallback (measured better than a mean of item vectors,
    /// docs/quality.md). `None` without such a model or without a recent vector.
    pub(super) fn encoder_query(
        &self,
        history: &[u64],
        index: &AnnIndex,
    ) -> Result<Option<Vec<f32>>> {
        let Some(model) = self.inner.model.read().clone() else {
            return Ok(None);
        };
        match model.rerank() {
            Some((r, dim)) if r.vector == index.vector && dim == index.dim => {}
            _ => return Ok(None),
        }
        Ok(self
            .encode_history(&model, history)?
            .and_then(|mut user| normalize(&mut user).then_some(user)))
    }

    /// The stored vectors `name` of the last `max` items (`newest_first`) that have one,
    /// oldest first.
    fn recent_vectors(
        &self,
        newest_first: impl Iterator<Item = u64>,
        name: &str,
        dim: usize,
        max: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(max);
        for id in newest_first {
            if out.len() == max {
                break;
            }
            if let Some(v) = self.stored_vector(id, name, dim)? {
                out.push(v);
            }
        }
        out.reverse();
        Ok(out)
    }

    fn stored_vector(&self, id: u64, name: &str, dim: usize) -> Result<Option<Vec<f32>>> {
        let key = keys::vector(id, name);
        match self.inner.store.get(TreeId::Vectors, &key)? {
            Some(bytes) => Ok(Some(records::decode_vector(&key, &bytes, dim)?)),
            None => Ok(None),
        }
    }
}

/// `sum(a * b)` in f64.
fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

/// `candidates[i].1 + weight * dense[i]`, best first (ties: the beam's order), the first `k`.
fn fuse(candidates: &[(u64, f64)], dense: &[f64], weight: f64, k: usize) -> Vec<(u64, f64)> {
    let mut fused: Vec<(u64, f64)> = candidates
        .iter()
        .zip(dense)
        .map(|(&(id, lm), &d)| (id, lm + weight * d))
        .collect();
    // A stable sort keeps the beam's order among equal scores.
    fused.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    fused.truncate(k);
    fused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusion_adds_the_weighted_dense_score_and_keeps_the_beam_order_on_ties() {
        let cands = [(7, -1.0), (3, -2.0), (9, -3.0), (4, -3.0)];
        // weight 0: the beam's ranking unchanged, cut at k
        assert_eq!(fuse(&cands, &[5.0, 0.0, 9.0, 1.0], 0.0, 3), cands[..3]);
        // weight 1: 9 (-3 + 9 = 6) first, then 7 (4), then 4 (-2) and 3 (-2) in beam order
        assert_eq!(
            fuse(&cands, &[5.0, 0.0, 9.0, 1.0], 1.0, 4),
            [(9, 6.0), (7, 4.0), (3, -2.0), (4, -2.0)]
        );
        assert_eq!(dot(&[1.0, 2.0], &[3.0, -0.5]), 2.0);
    }
}
