//! `recommend_by_source`: what one source answers for stored users, bypassing the cache and
//! the routing of `recommend` (for measuring each source, `convergedb eval`).

use super::read::Seen;
use super::validate::{validate_k, validate_key};
use super::Db;
use crate::{Error, Result, ScoredItem, Source};

impl Db {
    /// Up to `k` items per user from `source` alone, best first: [`Source::Model`] runs the
    /// attached model now (as a refresh does), [`Source::Ann`] searches the ANN index that
    /// `recommend` routes to (empty for a user with no recent item vector), and
    /// [`Source::Popularity`] ranks by interaction count. With `exclude_history` the user's
    /// history items are left out (what `recommend` serves); without, they may appear (the
    /// protocol of LC-Rec-style offline evaluation). Nothing is cached or queued.
    pub fn recommend_by_source(
        &self,
        users: &[&str],
        k: usize,
        source: Source,
        exclude_history: bool,
    ) -> Result<Vec<Vec<ScoredItem>>> {
        let limits = &self.inner.config.limits;
        validate_k(k, limits)?;
        for u in users {
            validate_key("user", u, limits)?;
        }
        self.inner.poison.check()?;
        match source {
            Source::Model => self.model_by_source(users, k, exclude_history),
            Source::Popularity | Source::Ann => {
                let index = match source {
                    Source::Ann => Some(self.routing_index().ok_or_else(|| {
                        Error::InvalidArgument(
                            "no ANN index to route to: build one (convergedb ann-build --vector NAME)"
                                .into(),
                        )
                    })?),
                    _ => None,
                };
                let mut out = Vec::with_capacity(users.len());
                for user in users {
                    let history = self.load_history_ids(user)?.map(|(_, ids)| ids);
                    let seen = Seen::new(history.as_deref().filter(|_| exclude_history));
                    let seen = |id: u64| seen.contains(id);
                    out.push(match &index {
                        None => self.popular(k, &seen),
                        Some(index) => match history
                            .as_ref()
                            .map(|h| self.history_query(h, index))
                            .transpose()?
                            .flatten()
                        {
                            Some(query) => {
                                let excluded = if exclude_history {
                                    history.as_ref().map_or(0, Vec::len)
                                } else {
                                    0
                                };
                                let ef = self.inner.config.ann.ef_search;
                                self.name_hits(index.search(&query, k, ef, &seen, excluded))
                            }
                            None => Vec::new(),
                        },
                    });
                }
                Ok(out)
            }
        }
    }

    fn model_by_source(
        &self,
        users: &[&str],
        k: usize,
        exclude_history: bool,
    ) -> Result<Vec<Vec<ScoredItem>>> {
        let model = self.attached()?;
        let mut prepared = Vec::with_capacity(users.len());
        for &user in users {
            let mut p = self.prepare_user(&model, user)?;
            if !exclude_history {
                p.exclude.clear();
            }
            prepared.push(p);
        }
        let answers = self.run_model(&model, &prepared, k)?;
        Ok(answers
            .iter()
            .map(|a| self.name_live(a.items.iter().copied()))
            .collect())
    }
}
