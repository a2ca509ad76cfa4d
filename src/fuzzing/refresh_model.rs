//! The reference model of the cached lists and the refresh queue (part of [`super::model`]).
//!
//! The lists themselves come from the generator (an oracle: the harness reads what the
//! database wrote after each refresh and checks it against a synchronous generation); what the
//! model predicts on its own is everything around them: which users are queued (durably by a
//! history change once a model was ever attached; in memory by a read that found no current
//! list, and by the sweep after an attach, a tokenization, a deletion or an open), which answer
//! a read gets (current list, stale list flagged and filtered, or the fallback), and what a
//! `wait_idle` does (sweep, then refresh every queued user, or fail without a fitting model).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use super::model::{Kind, Model};
use crate::{ListStamps, Recommendation, ScoredItem, Source};

/// A stored list, as the database holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedList {
    /// History version it was computed from.
    pub history_version: u64,
    /// Model that computed it.
    pub model_id: String,
    /// Tokenization version of its codes.
    pub sid_version: u64,
    /// When, Unix ms.
    pub computed_at_ms: u64,
    /// (item id, score), best first.
    pub items: Vec<(u64, f32)>,
}

/// The refresh state of the reference model.
#[derive(Clone, Debug, Default)]
pub struct RefreshModel {
    /// The model whose lists are current (persisted: the last attached).
    pub current_model: Option<String>,
    /// The generator attached to this handle (lost on reopen).
    pub attached: Option<String>,
    /// Cached lists by user.
    pub lists: BTreeMap<String, CachedList>,
    /// Users with a durable `stale` record.
    pub durable: BTreeSet<String>,
    /// Users queued in memory only (reads, sweeps); reads mutate it, hence the cell.
    pub memory: RefCell<BTreeSet<String>>,
    /// A sweep was requested and has not run (without workers it runs in `wait_idle`).
    pub sweep_pending: bool,
}

impl RefreshModel {
    /// A history write: queued durably once a model was ever attached (on a cluster node,
    /// always: the record script sets the user's pending marker).
    pub fn on_history_change(&mut self, user: &str, cluster: bool) {
        if cluster || self.current_model.is_some() {
            self.durable.insert(user.to_string());
        }
    }

    /// Queued (durably or in memory).
    pub fn is_queued(&self, user: &str) -> bool {
        self.durable.contains(user) || self.memory.borrow().contains(user)
    }

    /// Every queued user.
    pub fn queued(&self) -> BTreeSet<String> {
        self.durable.union(&self.memory.borrow()).cloned().collect()
    }

    /// A read that found no current list queues the user (once a model was ever attached).
    pub fn queue_from_read(&self, user: &str) {
        if self.current_model.is_some() {
            self.memory.borrow_mut().insert(user.to_string());
        }
    }

    /// `attach_test_generator(id)`.
    pub fn attach(&mut self, id: &str) {
        self.attached = Some(id.to_string());
        self.current_model = Some(id.to_string());
        self.sweep_pending = true;
    }

    /// Close and open: the generator and the in-memory queue are gone; the open sweeps. On a
    /// cluster node every queued user holds a pending marker in the cluster, which stays, and
    /// the open does not sweep (nor does a sweep requested before the close run).
    pub fn reopen(&mut self, cluster: bool) {
        self.attached = None;
        if cluster {
            self.sweep_pending = false;
        } else {
            self.memory.borrow_mut().clear();
            self.sweep_pending = self.current_model.is_some();
        }
    }
}

impl Model {
    /// Whether `list` is current for `user` (model, tokenization and history versions).
    fn list_current(&self, user: &str, list: &CachedList) -> bool {
        self.refresh.current_model.as_deref() == Some(list.model_id.as_str())
            && self.sid.as_ref().map(|s| s.version) == Some(list.sid_version)
            && self.histories.get(user).map_or(0, |h| h.version) == list.history_version
    }

    fn live_key(&self, id: u64) -> Option<&str> {
        let key = self
            .keys_by_id
            .get(usize::try_from(id).ok()?.checked_sub(1)?)?;
        self.items.get(key).filter(|m| m.live).map(|_| key.as_str())
    }

    /// The sweep: every user with a history whose list is missing, not current or holding a
    /// deleted item is queued in memory.
    pub fn sweep(&mut self) {
        self.refresh.sweep_pending = false;
        if self.refresh.current_model.is_none() {
            return;
        }
        let mut found = Vec::new();
        for user in self.histories.keys() {
            if self.refresh.is_queued(user) {
                continue;
            }
            let ok = self.refresh.lists.get(user).is_some_and(|l| {
                self.list_current(user, l)
                    && l.items.iter().all(|(id, _)| self.live_key(*id).is_some())
            });
            if !ok {
                found.push(user.clone());
            }
        }
        self.refresh.memory.borrow_mut().extend(found);
    }

    /// `wait_idle` without workers: the users it refreshes, or the error it fails with.
    pub fn wait_idle(&mut self) -> Result<BTreeSet<String>, Kind> {
        if self.refresh.sweep_pending {
            self.sweep();
        }
        let queued = self.refresh.queued();
        if queued.is_empty() {
            return Ok(queued);
        }
        if self.refresh.attached.is_none() {
            return Err("NoModel");
        }
        if self.sid.is_none() {
            return Err("ForeignTokenization");
        }
        Ok(queued)
    }

    /// After a successful `wait_idle`: the lists the database wrote are adopted, the queue is
    /// empty.
    pub fn refreshed(&mut self, lists: BTreeMap<String, CachedList>) {
        self.refresh.lists.extend(lists);
        self.refresh.durable.clear();
        self.refresh.memory.borrow_mut().clear();
    }

    /// The cached-list part of `recommend`: `Some` when a list answers.
    pub(super) fn recommend_cached(&self, user: &str, k: usize) -> Option<Recommendation> {
        let list = self.refresh.lists.get(user)?;
        let mut items = Vec::new();
        let mut dead = false;
        for &(id, score) in &list.items {
            if items.len() == k {
                break;
            }
            match self.live_key(id) {
                Some(key) => items.push(ScoredItem {
                    key: key.to_string(),
                    item_id: id,
                    score: f64::from(score),
                }),
                None => dead = true,
            }
        }
        let stale = dead || !self.list_current(user, list) || self.refresh.is_queued(user);
        if stale {
            if let Some(h) = self.histories.get(user) {
                items.retain(|it| !h.entries.iter().any(|e| e.item_id == it.item_id));
            }
            self.refresh.queue_from_read(user);
        }
        if items.is_empty() {
            return None;
        }
        Some(Recommendation {
            user: user.to_string(),
            source: Source::Model,
            history_version: list.history_version,
            stale,
            stamps: Some(ListStamps {
                model_id: list.model_id.clone(),
                sid_version: list.sid_version,
                computed_at_ms: list.computed_at_ms,
            }),
            items,
        })
    }
}
