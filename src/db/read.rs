//! The read path of recommendations.
//!
//! Routing grows with later layers (cached lists, ANN); today every answer comes from the
//! popularity ranking, excluding the user's own history.

use super::validate::{validate_k, validate_key};
use super::Db;
use crate::store::records::HistoryView;
use crate::store::TreeId;
use crate::{Recommendation, Result, ScoredItem, Source};

/// Histories up to this length are scanned linearly for exclusion; longer ones are sorted.
const SCAN_LIMIT: usize = 256;

impl Db {
    /// Up to `k` items for `user`, best first, excluding items already in the user's history.
    ///
    /// A user with no history (or an unknown user) gets the plain popularity list. `k` must be in
    /// `1..=max_k` ([`crate::Error::InvalidK`]).
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
        Ok(Recommendation {
            user: user.to_string(),
            source: Source::Popularity,
            history_version,
            items,
        })
    }
}
