//! Recording interactions and reading histories.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;

use super::group_commit::{group_failed, Pending};
use super::validate::{validate_interactions, validate_key};
use super::Db;
use crate::derived::{Derived, Effects};
use crate::store::records::{self, EntryRecord, StoredHistory};
use crate::store::{append_history, keys, may_touch_chunks, Reason, StaleRecord, TreeId};
use crate::{Error, History, HistoryEntry, Interaction, Result};

/// Distinct interaction kinds a database accepts (the table is stored in one meta record).
pub(crate) const MAX_KINDS: usize = 4096;

/// One call's batch, resolved: per user (first-seen order) its entries in arrival order.
struct Resolved {
    users: Vec<(Arc<str>, Vec<EntryRecord>)>,
    /// First seq of this batch's `stale` records (one per user).
    base_seq: u64,
}

impl Db {
    /// Records a batch of interactions atomically: all are stored or, on any error, none.
    ///
    /// Every item must exist and be live. Each touched user's history version is bumped once per
    /// batch; histories stay ordered by timestamp (ties in arrival order) and keep the most
    /// recent `history_limit` entries. Popularity is updated in the same transaction.
    ///
    /// Concurrent calls are grouped: one transaction and, under `Durability::Sync`, one flush
    /// for all the batches waiting at that moment (each still all-or-nothing on its own, and
    /// applied in arrival order). Every call returns after its own batch is durable.
    pub fn record_interactions(&self, events: &[Interaction]) -> Result<()> {
        if let Some(tier) = self.cluster() {
            return self.record_to_cluster(tier, events);
        }
        validate_interactions(events, &self.inner.config.limits)?;
        self.inner.poison.check()?;
        let mut arrival = self.inner.durable.arrive();
        if let Some(writer) = self.inner.writer.try_lock() {
            let others = self.inner.group.drain();
            arrival.take_over(others.len());
            let (mut results, seq) = self.commit_group(Some(events), &others);
            drop(arrival);
            drop(writer);
            let mine = results.remove(0);
            return self.finish_group(mine, seq, &others, results);
        }
        let pending = Pending::new(events.to_vec());
        self.inner.group.push(Arc::clone(&pending));
        let writer = self.inner.writer.lock();
        if !pending.taken() {
            // Nobody took our batch: lead the next group (ours is in it).
            let group = self.inner.group.drain();
            arrival.take_over(group.len().saturating_sub(1));
            let (results, seq) = self.commit_group(None, &group);
            drop(arrival);
            drop(writer);
            let _ = self.finish_group(Ok(()), seq, &group, results);
        } else {
            drop(writer);
            arrival.handed_over();
        }
        pending.wait()
    }

    /// After the writer lock is released: one flush for the group (Sync), then every grouped
    /// caller gets its result. `seq` is the group's commit number (`None`: nothing committed).
    fn finish_group(
        &self,
        mine: Result<()>,
        seq: Option<u64>,
        others: &[Arc<Pending>],
        results: Vec<Result<()>>,
    ) -> Result<()> {
        let flushed = match seq {
            Some(seq) => self
                .make_durable(seq)
                .and_then(|()| self.bound_buffered_loss()),
            None => Ok(()),
        };
        let settle = |r: Result<()>| match (&flushed, r) {
            (Err(e), Ok(())) => Err(group_failed(e)),
            (_, r) => r,
        };
        for (p, r) in others.iter().zip(results) {
            p.finish(settle(r));
        }
        match (flushed, mine) {
            (Err(e), Ok(())) => Err(e),
            (_, mine) => mine,
        }
    }

    /// Commits `own` (the leader's batch, borrowed) and the `queued` batches in one
    /// transaction, in that order, under the writer lock. Returns one result per batch (the
    /// leader's first) and the commit number, if anything was committed.
    fn commit_group(
        &self,
        own: Option<&[Interaction]>,
        queued: &[Arc<Pending>],
    ) -> (Vec<Result<()>>, Option<u64>) {
        let batches: Vec<&[Interaction]> = own
            .into_iter()
            .chain(queued.iter().map(|p| &p.events[..]))
            .collect();
        let mut results: Vec<Option<Result<()>>> = (0..batches.len()).map(|_| None).collect();
        let mut seq = None;
        if let Err(e) = self.inner.poison.check() {
            let results = (0..batches.len()).map(|_| Err(group_failed(&e))).collect();
            return (results, None);
        }
        // Resolve item keys and kinds before the transaction: the writer lock makes these reads
        // consistent, and a batch naming an unknown item fails alone.
        let mut kinds = self.inner.derived.read().kinds.clone();
        let mut resolved: Vec<Option<Resolved>> = Vec::with_capacity(batches.len());
        for (i, b) in batches.iter().enumerate() {
            match self.resolve_batch(b, &mut kinds) {
                Ok(r) => resolved.push(Some(r)),
                Err(e) => {
                    results[i] = Some(Err(e));
                    resolved.push(None);
                }
            }
        }
        // A batch whose users' records turn out damaged fails alone: retry without it.
        while resolved.iter().any(Option::is_some) {
            let culprit = Cell::new(None);
            match self.commit_resolved(&resolved, &kinds, &culprit) {
                Ok(s) => {
                    seq = Some(s);
                    break;
                }
                Err(e) => match culprit.get() {
                    Some(i) if !matches!(e, Error::Storage(_)) => {
                        resolved[i] = None;
                        results[i] = Some(Err(e));
                        // The failed batch's new kinds must not be stored: resolve the rest anew.
                        kinds = self.inner.derived.read().kinds.clone();
                        for (j, b) in batches.iter().enumerate() {
                            if resolved[j].is_some() {
                                match self.resolve_batch(b, &mut kinds) {
                                    Ok(r) => resolved[j] = Some(r),
                                    Err(e) => {
                                        resolved[j] = None;
                                        results[j] = Some(Err(e));
                                    }
                                }
                            }
                        }
                    }
                    _ => {
                        let inside: Vec<usize> = (0..resolved.len())
                            .filter(|&i| resolved[i].take().is_some())
                            .collect();
                        for &i in &inside[1..] {
                            results[i] = Some(Err(group_failed(&e)));
                        }
                        results[inside[0]] = Some(Err(e));
                        break;
                    }
                },
            }
        }
        let results = results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect();
        (results, seq)
    }

    /// Resolves one batch's item keys and kinds (interning new kinds into `kinds` only when the
    /// whole batch resolves) and reserves its `stale` seqs.
    fn resolve_batch(&self, events: &[Interaction], kinds: &mut Vec<String>) -> Result<Resolved> {
        let derived = self.inner.derived.read();
        let mut scratch: Option<Vec<String>> = None;
        let mut item_ids: HashMap<&str, u64> = HashMap::new();
        // Users in first-seen order, each with its events in arrival order: items are resolved
        // and kinds interned in that order (it decides which error a bad batch reports and the
        // codes new kinds get).
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut by_user: Vec<Vec<&Interaction>> = Vec::new();
        for e in events {
            let at = *index.entry(e.user.as_str()).or_insert_with(|| {
                by_user.push(Vec::new());
                by_user.len() - 1
            });
            by_user[at].push(e);
        }
        let mut users: Vec<(Arc<str>, Vec<EntryRecord>)> = Vec::with_capacity(by_user.len());
        for e in by_user.iter().flatten() {
            let item_id = match item_ids.get(e.item.as_str()) {
                Some(id) => *id,
                None => {
                    let id = self.resolve_item(&derived, &e.item)?;
                    item_ids.insert(&e.item, id);
                    id
                }
            };
            let kind = match e.kind.as_deref() {
                None => 0,
                Some(k) => {
                    let table = scratch.as_deref().unwrap_or(kinds);
                    match table.iter().position(|x| x == k) {
                        Some(pos) => pos as u32 + 1,
                        None => {
                            let table = scratch.get_or_insert_with(|| kinds.clone());
                            if table.len() >= MAX_KINDS {
                                return Err(Error::InvalidArgument(format!(
                                    "kind {k:?} would be distinct kind number {}, over the limit of {MAX_KINDS}",
                                    table.len() + 1
                                )));
                            }
                            table.push(k.to_string());
                            table.len() as u32
                        }
                    }
                }
            };
            if users.last().is_none_or(|(u, _)| **u != *e.user) {
                users.push((Arc::from(e.user.as_str()), Vec::new()));
            }
            let Some((_, entries)) = users.last_mut() else {
                continue;
            };
            entries.push(EntryRecord {
                item_id,
                timestamp: e.timestamp,
                kind,
                weight: e.weight,
            });
        }
        if let Some(table) = scratch {
            *kinds = table;
        }
        let base_seq = self.inner.refresh.queue.reserve_seqs(users.len());
        Ok(Resolved { users, base_seq })
    }

    pub(super) fn resolve_item(&self, derived: &Derived, key: &str) -> Result<u64> {
        let Some(v) = self.inner.store.get(TreeId::ItemKeys, key.as_bytes())? else {
            return Err(Error::UnknownItem {
                key: key.to_string(),
            });
        };
        let id = records::decode_item_pointer(key.as_bytes(), &v)?;
        match derived.catalog.get(id) {
            Some(meta) if meta.live => Ok(id),
            Some(_) => Err(Error::DeletedItem {
                key: key.to_string(),
            }),
            None => Err(Error::corruption(
                "item_keys",
                key.as_bytes(),
                "points to an item the catalog does not hold",
            )),
        }
    }

    /// Whether any user's append in the group can read or write a history chunk.
    fn group_may_touch_chunks(
        &self,
        batches: &[Option<Resolved>],
        limit: usize,
        chunk: usize,
    ) -> Result<bool> {
        let mut per_user: HashMap<&str, (usize, i64)> = HashMap::new();
        for (user, entries) in batches.iter().flatten().flat_map(|b| &b.users) {
            let slot = per_user.entry(user).or_insert((0, i64::MAX));
            slot.0 += entries.len();
            slot.1 = entries.iter().map(|e| e.timestamp).fold(slot.1, i64::min);
        }
        for (user, (count, oldest)) in per_user {
            let head = self.inner.store.get(TreeId::Histories, user.as_bytes())?;
            if may_touch_chunks(head.as_deref(), count, oldest, limit, chunk) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One transaction appending every resolved batch, in order; `culprit` names the batch
    /// whose records made it abort.
    fn commit_resolved(
        &self,
        batches: &[Option<Resolved>],
        kinds: &[String],
        culprit: &Cell<Option<usize>>,
    ) -> Result<u64> {
        let history_limit = self.inner.config.limits.history_limit;
        let chunk = self.inner.store.history_chunk;
        let enqueued_at_ms = super::refresh::now_ms();
        // Only the trees this group can touch (the writer lock keeps the heads as read here).
        let mut trees = vec![TreeId::Meta, TreeId::Histories, TreeId::Popular];
        if self.inner.derived.read().model_id.is_some() {
            trees.push(TreeId::Stale);
        }
        if self.group_may_touch_chunks(batches, history_limit, chunk)? {
            trees.push(TreeId::HistoryChunks);
        }
        self.commit_locked(&trees, &(), |tx, derived, _| {
            // Update trigger (invariant 4): once a model was attached, a history change
            // queues the user in the same transaction.
            let trigger = derived.model_id.is_some();
            let mut queued = Vec::new();
            let mut counts = tx.counts()?;
            let mut deltas: HashMap<u64, i64> = HashMap::new();
            for (b, batch) in batches.iter().enumerate() {
                let Some(batch) = batch else { continue };
                culprit.set(Some(b));
                for (i, (user, entries)) in batch.users.iter().enumerate() {
                    let out = append_history(tx, user.as_bytes(), entries, history_limit, chunk)?;
                    for e in entries {
                        *deltas.entry(e.item_id).or_default() += 1;
                    }
                    for id in &out.evicted {
                        *deltas.entry(*id).or_default() -= 1;
                    }
                    counts.users += out.new_user as u64;
                    counts.recorded += entries.len() as u64;
                    counts.interactions =
                        counts.interactions + entries.len() as u64 - out.evicted.len() as u64;
                    if trigger {
                        let seq = batch.base_seq + i as u64;
                        let stale = StaleRecord {
                            seq,
                            history_version: out.version,
                            enqueued_at_ms,
                            reason: Reason::History,
                        };
                        tx.insert(TreeId::Stale, user.as_bytes(), stale.encode())?;
                        queued.push((Arc::clone(user), seq));
                    }
                }
            }
            culprit.set(None);
            let mut effects = Effects {
                queued,
                ..Effects::default()
            };
            for (item_id, delta) in deltas {
                if delta == 0 {
                    continue;
                }
                let count = tx.popular(item_id)?;
                let new = count.checked_add_signed(delta).ok_or_else(|| {
                    Error::corruption(
                        "popular",
                        &keys::item_id(item_id),
                        "count would go negative",
                    )
                })?;
                tx.set_popular(item_id, new)?;
                effects.counts.push((item_id, new));
            }
            if kinds.len() != derived.kinds.len() {
                tx.insert(TreeId::Meta, keys::META_KINDS, records::encode_kinds(kinds))?;
                effects.kinds = Some(kinds.to_vec());
            }
            tx.set_counts(&counts)?;
            Ok(((), effects))
        })
        .map(|((), seq)| seq)
    }

    /// Every user with a history, in key order (a scan of the histories tree's keys). With a
    /// cluster tier ([`crate::Config::cluster`]) the only item is an error: the cluster's
    /// users are not listed through a node.
    pub fn users(&self) -> impl Iterator<Item = Result<String>> + '_ {
        let refused = self
            .cluster()
            .map(|_| Err(unsupported_on_cluster("listing users")));
        refused.into_iter().chain(
            self.inner
                .store
                .tree(TreeId::Histories)
                .iter()
                .keys()
                .map(|k| keys::parse_text("histories", &k?))
                .filter(|_| self.cluster().is_none()),
        )
    }

    /// The history of `user` from whichever tier holds it: (version, item ids oldest first),
    /// `None` for a user never recorded.
    pub(super) fn load_history_ids(&self, user: &str) -> Result<Option<(u64, Vec<u64>)>> {
        if let Some(tier) = self.cluster() {
            return self.cluster_history_ids(tier, user);
        }
        Ok(StoredHistory::load(&self.inner.store, user.as_bytes())?
            .map(|h| (h.version(), h.item_ids())))
    }

    /// The user's history, oldest first.
    ///
    /// Fails with [`Error::UnknownUser`] when no interaction was ever recorded for `user`.
    pub fn history(&self, user: &str) -> Result<History> {
        validate_key("user", user, &self.inner.config.limits)?;
        self.inner.poison.check()?;
        if let Some(tier) = self.cluster() {
            return self.history_from_cluster(tier, user);
        }
        let Some(rec) = StoredHistory::load(&self.inner.store, user.as_bytes())? else {
            return Err(Error::UnknownUser {
                key: user.to_string(),
            });
        };
        let derived = self.inner.derived.read();
        let mut entries = Vec::with_capacity(rec.len());
        for e in rec.entries() {
            let meta = derived.catalog.get(e.item_id).ok_or_else(|| {
                Error::corruption(
                    "histories",
                    user.as_bytes(),
                    format!(
                        "entry names item id {} that the catalog does not hold",
                        e.item_id
                    ),
                )
            })?;
            entries.push(HistoryEntry {
                item: meta.key.to_string(),
                item_id: e.item_id,
                live: meta.live,
                timestamp: e.timestamp,
                kind: derived.kind_name(e.kind),
                weight: e.weight,
            });
        }
        Ok(History {
            user: user.to_string(),
            version: rec.version(),
            recorded: rec.recorded(),
            entries,
        })
    }
}

/// The error of a per-user call the cluster tier does not offer through a node.
pub(super) fn unsupported_on_cluster(what: &str) -> Error {
    Error::InvalidArgument(format!(
        "{what} is not available when the per-user tier is a Redis Cluster (Config::cluster): \
         it reads every history, which the cluster holds, not this node"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Item};

    /// A group whose second batch meets a damaged history: that batch fails alone, with the
    /// corruption; the first lands; the damaged batch's new kind is not stored.
    #[test]
    fn a_batch_with_a_damaged_history_fails_alone_in_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let db = Config::new(dir.path()).refresh_workers(0).open().unwrap();
        db.put_items(&[Item::new("a")]).unwrap();
        db.record_interactions(&[Interaction::new("bad", "a", 1)])
            .unwrap();
        db.inner
            .store
            .tree(TreeId::Histories)
            .insert("bad", &[2u8, 0, 0][..])
            .unwrap();
        let good = [Interaction::new("good", "a", 1).kind("view")];
        let damaged = Pending::new(vec![Interaction::new("bad", "a", 2).kind("buy")]);
        let late = Pending::new(vec![Interaction::new("good", "a", 3)]);
        let unknown = Pending::new(vec![Interaction::new("good", "nope", 4)]);
        let queued = [damaged, late, unknown];
        let writer = db.inner.writer.lock();
        let (results, seq) = db.commit_group(Some(&good), &queued);
        assert!(seq.is_some());
        assert!(results[0].is_ok() && results[2].is_ok());
        assert!(
            matches!(
                &results[1],
                Err(Error::Corruption {
                    tree: "histories",
                    ..
                })
            ),
            "{:?}",
            results[1]
        );
        assert!(matches!(&results[3], Err(Error::UnknownItem { .. })));
        drop(writer);
        let h = db.history("good").unwrap();
        assert_eq!((h.entries.len(), h.version), (2, 2));
        assert_eq!(db.stats().unwrap().kinds, vec!["view".to_string()]);
    }
}
