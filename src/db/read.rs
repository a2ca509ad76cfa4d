//! The read path of recommendations and its routing.
//!
//! `recommend` answers from the user's cached model list when there is one (current, or stale
//! and flagged); otherwise [`Db::route`] decides: the ANN index for a user with enough history
//! when an index is available, else the popularity ranking. Every source excludes the user's
//! own history.

use std::sync::Arc;

use super::validate::{validate_k, validate_key};
use super::Db;
use crate::ann::{normalize, AnnIndex};
use crate::store::records::{HistoryView, StoredHistory};
use crate::store::{keys, records, TopkView, TreeId};
use crate::{ListStamps, Recommendation, Result, ScoredItem, Source};

/// Histories up to this length are scanned linearly for exclusion; longer ones are sorted.
const SCAN_LIMIT: usize = 256;

/// Weight of the history entry `r` places from the newest (r = 0) in the ANN query vector:
/// `RECENCY_DECAY^r`, so the newest item counts 1, the 5th newest about 0.41, the 20th 0.014.
pub(crate) const RECENCY_DECAY: f32 = 0.8;

/// Writes item `n` of `items`, reusing the slot's key allocation when there is one.
fn set_item(items: &mut Vec<ScoredItem>, n: usize, key: &str, item_id: u64, score: f64) {
    match items.get_mut(n) {
        Some(it) => {
            it.key.clear();
            it.key.push_str(key);
            it.item_id = item_id;
            it.score = score;
        }
        None => items.push(ScoredItem {
            key: key.to_string(),
            item_id,
            score,
        }),
    }
}

/// "Is this item in the history": short histories are scanned in place, long ones sorted once.
pub(super) struct Seen<'a> {
    history: &'a [u64],
    sorted: Option<Vec<u64>>,
}

impl<'a> Seen<'a> {
    /// Over a history's item ids (`None`: nothing seen).
    pub(super) fn new(history: Option<&'a [u64]>) -> Self {
        let history = history.unwrap_or(&[]);
        let sorted = (history.len() > SCAN_LIMIT).then(|| {
            let mut ids = history.to_vec();
            ids.sort_unstable();
            ids
        });
        Seen { history, sorted }
    }

    pub(super) fn contains(&self, id: u64) -> bool {
        match &self.sorted {
            Some(ids) => ids.binary_search(&id).is_ok(),
            None => self.history.contains(&id),
        }
    }
}

/// What the per-user tier says about the history a cached list must match.
pub(super) struct Freshness<'a> {
    /// The history's version now (`None`: the user has no history).
    pub version: Option<u64>,
    /// Whether an item is among the history's newest entries.
    pub in_tail: &'a dyn Fn(u64) -> bool,
    /// Not current for a reason only the tier knows (queued for a refresh; on the cluster, a
    /// pending marker or a list computed under another stamp nonce).
    pub stale: bool,
}

/// Which source answers a `recommend` call.
enum Route {
    /// ANN over this index with this (normalised) query vector.
    Ann(Arc<AnnIndex>, Vec<f32>),
    Popularity,
}

impl Db {
    /// Up to `k` items for `user`, best first, excluding items already in the user's history.
    ///
    /// Routing (architecture §7), and [`Recommendation::source`] says which answered:
    /// 1. the user's cached model list when it is current ([`Source::Model`]);
    /// 2. a cached list that is not current (history changed, another model or tokenization,
    ///    a deleted item, an item that is in the user's history): served at once with `stale: true`, items now in the history or
    ///    deleted filtered out, and the user queued for a refresh;
    /// 3. no list: with at least `Config::ann_min_history` history entries and an ANN index
    ///    (see `Config::ann_vector`), the live items nearest to the user's query vector
    ///    ([`Source::Ann`]), and the user is queued. The query is the attached model's user
    ///    encoder over the recent items when the model is format 3 and its re-rank reads the
    ///    index's vector, else a recency-weighted mean of the user's recent item vectors;
    /// 4. otherwise the popularity list ([`Source::Popularity`]).
    ///
    /// A cached answer holds at most `Config::cache_k` items. `k` must be in `1..=max_k`
    /// ([`crate::Error::InvalidK`]).
    pub fn recommend(&self, user: &str, k: usize) -> Result<Recommendation> {
        let mut out = Recommendation::default();
        self.recommend_into(user, k, &mut out)?;
        Ok(out)
    }

    /// [`Db::recommend`] into `out`, reusing its allocations (the user string, the item list
    /// and each item's key): the hot path of a serving loop that keeps one `Recommendation`
    /// per thread. On error `out` is left in an unspecified but valid state.
    pub fn recommend_into(&self, user: &str, k: usize, out: &mut Recommendation) -> Result<()> {
        let limits = &self.inner.config.limits;
        validate_k(k, limits)?;
        validate_key("user", user, limits)?;
        self.inner.poison.check()?;
        if let Some(tier) = self.cluster() {
            return self.recommend_cluster(tier, user, k, out);
        }
        // Membership first, then the list: a user leaves the queue only after a list at least
        // as new as every acknowledged history write is stored, so this order never serves an
        // outdated list as current.
        let queued = self.inner.refresh.queue.contains(user);
        if let Some(bytes) = self.inner.store.get(TreeId::Topk, user.as_bytes())? {
            let view = TopkView::parse(user.as_bytes(), &bytes)?;
            // The history's head, always (one get): its version and its tail (the newest
            // entries, fewer than one chunk); the whole history only when the list is not
            // current, so a cached answer never reads chunks.
            let head_bytes = self.inner.store.get(TreeId::Histories, user.as_bytes())?;
            let head = head_bytes
                .as_ref()
                .map(|b| HistoryView::parse(user.as_bytes(), b))
                .transpose()?;
            let tail = head.as_ref().map(HistoryView::tail);
            let in_tail = |id: u64| tail.as_ref().is_some_and(|t| t.contains(id));
            let fresh = Freshness {
                version: head.as_ref().map(HistoryView::version),
                in_tail: &in_tail,
                stale: queued,
            };
            let whole = || {
                head_bytes
                    .clone()
                    .map(|b| {
                        StoredHistory::from_head(&self.inner.store, user.as_bytes(), b)
                            .map(|h| h.item_ids())
                    })
                    .transpose()
            };
            let requeue = || self.queue_from_read(user);
            if self.answer_from_cache(user, &view, k, &fresh, whole, requeue, out)? {
                return Ok(());
            }
        }
        let history = StoredHistory::load(&self.inner.store, user.as_bytes())?
            .map(|h| (h.version(), h.item_ids()));
        if history.as_ref().is_some_and(|(_, ids)| !ids.is_empty()) {
            self.queue_from_read(user);
        }
        self.answer_from_fallback(user, k, history, out)
    }

    /// Answers a user without a usable cached list from the ANN index or the popularity
    /// ranking (`history`: its version and item ids, oldest first), into `out`.
    pub(super) fn answer_from_fallback(
        &self,
        user: &str,
        k: usize,
        history: Option<(u64, Vec<u64>)>,
        out: &mut Recommendation,
    ) -> Result<()> {
        let history_version = history.as_ref().map_or(0, |(v, _)| *v);
        let ids = history.as_ref().map(|(_, ids)| ids.as_slice());
        let seen = Seen::new(ids);
        let seen = |id: u64| seen.contains(id);
        let (source, items) = match self.route(ids)? {
            Route::Ann(index, query) => {
                let ef = self.inner.config.ann.ef_search;
                let excluded = ids.map_or(0, <[u64]>::len);
                let hits = index.search(&query, k, ef, &seen, excluded);
                (Source::Ann, self.name_hits(hits))
            }
            Route::Popularity => (Source::Popularity, self.popular(k, &seen)),
        };
        *out = Recommendation {
            user: user.to_string(),
            source,
            history_version,
            stale: false,
            stamps: None,
            items,
        };
        Ok(())
    }

    /// Answers from a cached list into `out` (both tiers): current only when it was computed
    /// by this node's model and tokenization from the history `fresh` describes; never an item
    /// of the history (the tail in place on every answer, the `whole` history only for a list
    /// that is not current); `requeue` runs for a list that is not current. False when it has
    /// no item left to serve (the caller falls back to the other sources). A current-looking
    /// list holding an older history item is damage `check()` reports (V4).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn answer_from_cache(
        &self,
        user: &str,
        view: &TopkView<'_>,
        k: usize,
        fresh: &Freshness<'_>,
        whole: impl FnOnce() -> Result<Option<Vec<u64>>>,
        requeue: impl FnOnce(),
        out: &mut Recommendation,
    ) -> Result<bool> {
        let mut n = 0;
        let mut dead = false;
        let current = {
            let derived = self.inner.derived.read();
            for i in 0..view.len() {
                if n == k {
                    break;
                }
                let (id, score) = view.item(i);
                match derived.catalog.get(id).filter(|m| m.live) {
                    Some(meta) => {
                        set_item(&mut out.items, n, &meta.key, id, score as f64);
                        n += 1;
                    }
                    None => dead = true,
                }
            }
            derived.model_id.as_deref() == Some(view.model_id())
                && derived.sid_version() == Some(view.sid_version())
        };
        out.items.truncate(n);
        let outdated = fresh.version.is_some_and(|v| v != view.history_version());
        let before = out.items.len();
        out.items.retain(|it| !(fresh.in_tail)(it.item_id));
        let seen_in_history = out.items.len() != before;
        let stale = dead || !current || fresh.stale || outdated || seen_in_history;
        if stale {
            if let Some(ids) = whole()? {
                let seen = Seen::new(Some(&ids));
                out.items.retain(|it| !seen.contains(it.item_id));
            }
            requeue();
        }
        if out.items.is_empty() {
            return Ok(false);
        }
        out.user.clear();
        out.user.push_str(user);
        out.source = Source::Model;
        out.history_version = view.history_version();
        out.stale = stale;
        match &mut out.stamps {
            Some(s) => {
                s.model_id.clear();
                s.model_id.push_str(view.model_id());
                s.sid_version = view.sid_version();
                s.computed_at_ms = view.computed_at_ms();
            }
            None => {
                out.stamps = Some(ListStamps {
                    model_id: view.model_id().to_string(),
                    sid_version: view.sid_version(),
                    computed_at_ms: view.computed_at_ms(),
                })
            }
        }
        Ok(true)
    }

    /// A read found no current list: queue the user in memory, ahead of the others (once a model
    /// was attached; the sweep on open finds them again after a crash).
    fn queue_from_read(&self, user: &str) {
        if self.inner.derived.read().model_id.is_none() {
            return;
        }
        let queue = &self.inner.refresh.queue;
        if queue.contains(user) {
            queue.promote(user);
        } else {
            queue.push([(Arc::from(user), 0)], true);
        }
    }

    /// Decides the source for a user with `history`.
    fn route(&self, history: Option<&[u64]>) -> Result<Route> {
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
    pub(super) fn routing_index(&self) -> Option<Arc<AnnIndex>> {
        let config = &self.inner.config;
        let slots = self.inner.ann.read();
        let name = match &config.ann_vector {
            Some(name) => Some(name),
            None if slots.len() == 1 => slots.keys().next(),
            None => config.ann_maintain.first(),
        }?;
        slots.get(name).map(|s| Arc::clone(&s.index))
    }

    /// The ANN query of a user: with a format-3 model attached whose re-rank reads this
    /// index's vector, its user encoder's vector (`encoder_query`); otherwise the
    /// recency-weighted mean of the user's most recent item vectors (each normalised, weight
    /// `RECENCY_DECAY^r`), normalised. `None` when no recent item has the vector.
    pub(super) fn history_query(
        &self,
        history: &[u64],
        index: &AnnIndex,
    ) -> Result<Option<Vec<f32>>> {
        if let Some(query) = self.encoder_query(history, index)? {
            return Ok(Some(query));
        }
        let recent = self.inner.config.ann.recent_items;
        let mut query = vec![0.0f32; index.dim];
        let mut used = 0usize;
        let mut weight = 1.0f32;
        for &id in history.iter().rev().take(recent) {
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
    pub(super) fn popular(&self, k: usize, seen: &dyn Fn(u64) -> bool) -> Vec<ScoredItem> {
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
