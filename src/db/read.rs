//! The read path of recommendations and its routing.
//!
//! [`Db::route`] is the one place that decides which source answers: today the ANN index for a
//! user with enough history when an index is available, else the popularity ranking. (Cached
//! LLM lists join it as the first choice when that layer lands.) Every source excludes the
//! user's own history.

use std::sync::Arc;

use super::validate::{validate_k, validate_key};
use super::Db;
use crate::ann::{normalize, AnnIndex};
use crate::store::records::HistoryView;
use crate::store::{keys, records, TreeId};
use crate::{Recommendation, Result, ScoredItem, Source};

/// Histories up to this length are scanned linearly for exclusion; longer ones are sorted.
const SCAN_LIMIT: usize = 256;

/// Weight of the history entry `r` places from the newest (r = 0) in the ANN query vector:
/// `RECENCY_DECAY^r`, so the newest item counts 1, the 5th newest about 0.41, the 20th 0.014.
pub(crate) const RECENCY_DECAY: f32 = 0.8;

/// Which source answers a `recommend` call.
enum Route {
    /// ANN over this index with this (normalised) query vector.
    Ann(Arc<AnnIndex>, Vec<f32>),
    Popularity,
}

impl Db {
    /// Up to `k` items for `user`, best first, excluding items already in the user's history.
    ///
    /// A user with at least `Config::ann_min_history` history entries, when an ANN index is
    /// available (see `Config::ann_vector`), gets the live items nearest to a recency-weighted
    /// mean of their recent item vectors ([`Source::Ann`]). Everyone else (an unknown user, no
    /// usable history, no index) gets the popularity list ([`Source::Popularity`]). `k` must be
    /// in `1..=max_k` ([`crate::Error::InvalidK`]).
    pub fn recommend(&self, user: &str, k: usize) -> Result<Recommendation> {
        let limits = &self.inner.config.limits;
        validate_k(k, limits)?;
        validate_key("user", user, limits)?;
        self.inner.poison.check()?;
        let bytes = self.inner.store.get(TreeId::Histories, user.as_bytes())?;
        let history = match &bytes {
            Some(b) => Some(HistoryView::parse(user.as_bytes(), b)?),
            None => None,
        };
        let history_version = history.as_ref().map_or(0, HistoryView::version);
        // Short histories are scanned in place; long ones are sorted once for binary search.
        let sorted: Option<Vec<u64>> = history.as_ref().filter(|h| h.len() > SCAN_LIMIT).map(|h| {
            let mut ids: Vec<u64> = (0..h.len()).map(|i| h.entry(i).item_id).collect();
            ids.sort_unstable();
            ids
        });
        let seen = |id: u64| match (&sorted, &history) {
            (Some(ids), _) => ids.binary_search(&id).is_ok(),
            (None, Some(h)) => h.contains(id),
            (None, None) => false,
        };
        let (source, items) = match self.route(history.as_ref())? {
            Route::Ann(index, query) => {
                let ef = self.inner.config.ann.ef_search;
                let excluded = history.as_ref().map_or(0, HistoryView::len);
                let hits = index.search(&query, k, ef, &seen, excluded);
                (Source::Ann, self.name_hits(hits))
            }
            Route::Popularity => (Source::Popularity, self.popular(k, &seen)),
        };
        Ok(Recommendation {
            user: user.to_string(),
            source,
            history_version,
            items,
        })
    }

    /// Decides the source for a user with `history`.
    fn route(&self, history: Option<&HistoryView<'_>>) -> Result<Route> {
        let Some(history) = history else {
            return Ok(Route::Popularity);
        };
        if history.len() < self.inner.config.ann.min_history {
            return Ok(Route::Popularity);
        }
        let Some(index) = self.routing_index() else {
            return Ok(Route::Popularity);
        };
        Ok(match self.history_query(history, &index)? {
            Some(query) => Route::Ann(index, query),
            None => Route::Popularity,
        })
    }

    /// The index `recommend` uses: `Config::ann_vector`, else the only index, else the first
    /// maintained vector's.
    fn routing_index(&self) -> Option<Arc<AnnIndex>> {
        let config = &self.inner.config;
        let slots = self.inner.ann.read();
        let name = match &config.ann_vector {
            Some(name) => Some(name),
            None if slots.len() == 1 => slots.keys().next(),
            None => config.ann_maintain.first(),
        }?;
        slots.get(name).map(|s| Arc::clone(&s.index))
    }

    /// The recency-weighted mean of the user's most recent item vectors (each normalised,
    /// weight `RECENCY_DECAY^r`), normalised; `None` when no recent item has the vector.
    fn history_query(
        &self,
        history: &HistoryView<'_>,
        index: &AnnIndex,
    ) -> Result<Option<Vec<f32>>> {
        let recent = self.inner.config.ann.recent_items;
        let mut query = vec![0.0f32; index.dim];
        let mut used = 0usize;
        let mut weight = 1.0f32;
        for i in (0..history.len()).rev().take(recent) {
            let id = history.entry(i).item_id;
            let key = keys::vector(id, &index.vector);
            if let Some(bytes) = self.inner.store.get(TreeId::Vectors, &key)? {
                let mut v = records::decode_vector(&key, &bytes, index.dim)?;
                if normalize(&mut v) {
                    for (q, x) in query.iter_mut().zip(&v) {
                        *q += weight * x;
                    }
                    used += 1;
                }
            }
            weight *= RECENCY_DECAY;
        }
        Ok((used > 0 && normalize(&mut query)).then_some(query))
    }

    /// The `k` most popular live items not `seen`.
    fn popular(&self, k: usize, seen: &dyn Fn(u64) -> bool) -> Vec<ScoredItem> {
        let derived = self.inner.derived.read();
        let mut items = Vec::with_capacity(k);
        for (id, count) in derived.popularity.ranked() {
            if items.len() == k {
                break;
            }
            if seen(id) {
                continue;
            }
            if let Some(meta) = derived.catalog.get(id) {
                items.push(ScoredItem {
                    key: meta.key.to_string(),
                    item_id: id,
                    score: count as f64,
                });
            }
        }
        items
    }
}
