//! The read path of recommendations.
//!
//! Routing grows with later layers (cached lists, ANN); today every answer comes from the
//! popularity ranking, excluding the user's own history.

use super::validate::{validate_k, validate_key};
use super::Db;
use crate::store::records::HistoryRecord;
use crate::store::TreeId;
use crate::{Recommendation, Result, ScoredItem, Source};

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
        let (history_version, mut seen) =
            match self.inner.store.get(TreeId::Histories, user.as_bytes())? {
                Some(bytes) => {
                    let rec = HistoryRecord::decode(user.as_bytes(), &bytes)?;
                    let ids: Vec<u64> = rec.entries.iter().map(|e| e.item_id).collect();
                    (rec.version, ids)
                }
                None => (0, Vec::new()),
            };
        seen.sort_unstable();
        let derived = self.inner.derived.read();
        let items = derived
            .popularity
            .top(k, |id| seen.binary_search(&id).is_ok())
            .into_iter()
            .filter_map(|(id, count)| {
                derived.catalog.get(id).map(|meta| ScoredItem {
                    key: meta.key.to_string(),
                    item_id: id,
                    score: count as f64,
                })
            })
            .collect();
        Ok(Recommendation {
            user: user.to_string(),
            source: Source::Popularity,
            history_version,
            items,
        })
    }
}
