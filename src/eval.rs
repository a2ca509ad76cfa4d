//! Offline quality measured through the database (`convergedb eval`, docs/quality.md).
//!
//! The protocol of the LC-Rec line of work: a database imported with `--hold-out-last N`
//! holds every user's history without their last N interactions; the first held-out
//! interaction of each user is the target. Each source ranks the full catalogue for every
//! user (what [`Db::recommend_by_source`] returns), and a source scores Recall@K (the target
//! is in the top K) and NDCG@K (`1 / log2(rank + 2)` for the target at 0-based `rank < K`)
//! averaged over the users. With `--hold-out-last 1` the target is the test item and the
//! history everything before it (the test split); with 2 it is the validation item.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::{Db, Interaction, Result, Source};

/// What to measure. Build with [`EvalOptions::new`] and the fields.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// The cut-off K (default 10).
    pub k: usize,
    /// The sources to measure (default: model, popularity).
    pub sources: Vec<Source>,
    /// Measure each source with the user's history items left out, and with them kept (the
    /// LC-Rec protocol keeps them). Default both.
    pub exclusions: Vec<bool>,
    /// Users per model batch (default 64).
    pub batch: usize,
    /// At most this many users (the first by key; default all).
    pub max_users: Option<usize>,
}

impl EvalOptions {
    /// K = 10, model and popularity, history kept and excluded, batches of 64, every user.
    pub fn new() -> Self {
        EvalOptions {
            k: 10,
            sources: vec![Source::Model, Source::Popularity],
            exclusions: vec![false, true],
            batch: 64,
            max_users: None,
        }
    }
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// One source's quality.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SourceQuality {
    /// The source measured.
    pub source: Source,
    /// Whether the user's history items were left out of the ranking.
    pub exclude_history: bool,
    /// Users measured.
    pub users: usize,
    /// Recall@K (= hit rate: one target per user).
    pub recall: f64,
    /// NDCG@K.
    pub ndcg: f64,
    /// Wall time of the source's answers, seconds.
    pub seconds: f64,
}

/// The measurement: one row per source and exclusion.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EvalReport {
    /// The cut-off K.
    pub k: usize,
    /// Users measured (one target each).
    pub users: usize,
    /// Held-out interactions naming an item the database does not hold (their users are not
    /// measured).
    pub unknown_targets: usize,
    /// One row per source and exclusion, in the order of the options.
    pub rows: Vec<SourceQuality>,
}

/// Each user's first held-out interaction (file order, which `--held-out` writes in
/// timestamp order): user -> target item key.
pub fn targets(held_out: &[Interaction]) -> BTreeMap<&str, &str> {
    let mut out = BTreeMap::new();
    for e in held_out {
        out.entry(e.user.as_str()).or_insert(e.item.as_str());
    }
    out
}

/// Recall@k and NDCG@k of `lists` (item keys, best first) against one target per list.
pub fn rank_metrics<S: AsRef<str>>(lists: &[Vec<S>], targets: &[&str], k: usize) -> (f64, f64) {
    if lists.is_empty() {
        return (0.0, 0.0);
    }
    let (mut hits, mut gain) = (0usize, 0.0f64);
    for (list, target) in lists.iter().zip(targets) {
        if let Some(rank) = list.iter().take(k).position(|x| x.as_ref() == *target) {
            hits += 1;
            gain += 1.0 / ((rank + 2) as f64).log2();
        }
    }
    let n = lists.len() as f64;
    (hits as f64 / n, gain / n)
}

/// Measures `opts.sources` on the users of `held_out`; `progress(done, total)` after each
/// batch.
pub fn evaluate(
    db: &Db,
    held_out: &[Interaction],
    opts: &EvalOptions,
    progress: Option<&dyn Fn(u64, u64)>,
) -> Result<EvalReport> {
    let all = targets(held_out);
    let mut users = Vec::with_capacity(all.len());
    let mut unknown = 0;
    for (&user, &item) in &all {
        if db.item_id(item)?.is_some() {
            users.push((user, item));
        } else {
            unknown += 1;
        }
    }
    if let Some(max) = opts.max_users {
        users.truncate(max);
    }
    let keys: Vec<&str> = users.iter().map(|u| u.0).collect();
    let wanted: Vec<&str> = users.iter().map(|u| u.1).collect();
    let total = (opts.sources.len() * opts.exclusions.len() * keys.len()) as u64;
    let mut done = 0u64;
    let mut rows = Vec::new();
    for &source in &opts.sources {
        for &exclude in &opts.exclusions {
            let started = Instant::now();
            let mut lists = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(opts.batch.max(1)) {
                for list in db.recommend_by_source(chunk, opts.k, source, exclude)? {
                    lists.push(list.into_iter().map(|s| s.key).collect::<Vec<_>>());
                }
                done += chunk.len() as u64;
                if let Some(p) = progress {
                    p(done, total);
                }
            }
            let (recall, ndcg) = rank_metrics(&lists, &wanted, opts.k);
            rows.push(SourceQuality {
                source,
                exclude_history: exclude,
                users: keys.len(),
                recall,
                ndcg,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
    }
    Ok(EvalReport {
        k: opts.k,
        users: keys.len(),
        unknown_targets: unknown,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_by_hand() {
        let lists = vec![vec!["a", "b", "c"], vec!["x", "y", "t"], vec!["p"]];
        // user 0: target at rank 0 (gain 1), user 1: rank 2 (1/log2(4) = 0.5), user 2: miss
        let (recall, ndcg) = rank_metrics(&lists, &["a", "t", "q"], 3);
        assert!((recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((ndcg - 1.5 / 3.0).abs() < 1e-12);
        // a cut-off of 2 loses user 1's hit
        let (recall, ndcg) = rank_metrics(&lists, &["a", "t", "q"], 2);
        assert!((recall - 1.0 / 3.0).abs() < 1e-12 && (ndcg - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn the_first_held_out_interaction_is_the_target() {
        let e = |u: &str, i: &str| Interaction::new(u, i, 0);
        let held = [e("u1", "a"), e("u2", "b"), e("u1", "c")];
        let t = targets(&held);
        assert_eq!(t.get("u1"), Some(&"a"));
        assert_eq!(t.get("u2"), Some(&"b"));
    }
}
