//! The per-user tier on a Redis Cluster (`Config::cluster`, `crate::cluster`): this node's
//! catalog, codes and model serve users whose histories, lists and refresh queue live in the
//! cluster. Every per-user call of the facade routes here when the database was opened with a
//! cluster; what is above the tier is shared with the local backend: the answer from a cached
//! list and its staleness rules (`read.rs`), the fallback routing (ANN, popularity), the model
//! run of a refresh batch (`generate.rs`), the refresh threads (`refresh_pool.rs`,
//! `cluster_worker.rs`).
//!
//! Recording resolves item keys in this node's catalog and kinds in the namespace's kind table,
//! then appends atomically per user (one script with the pending marker); a refresh reads each
//! history with its (version, nonce) stamp, runs the attached model and compare-and-swaps the
//! list; a serving read answers from the cluster's list in one round trip. Popularity, the
//! fallback's ranking, counts the interactions recorded through this node (kept in its local
//! store). Not here (docs/cluster.md): catalog replication between nodes.

use std::collections::HashMap;
use std::sync::Arc;

use super::generate::Prepared;
use super::read::Freshness;
use super::validate::{validate_interactions, validate_key};
use super::Db;
use crate::cluster::{ClusterEntry, ClusterTier, Delivery};
use crate::derived::Effects;
use crate::store::{TopkRecord, TopkView, TreeId};
use crate::{Error, Interaction, Recommendation, Result};

/// What one cluster refresh batch did, per delivered user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterBatch {
    /// Lists written (the CAS held).
    pub written: usize,
    /// Lists refused: the history changed while they were computed (its new record notified
    /// the queue again).
    pub conflicts: usize,
    /// Deliveries with nothing to do: the user's marker was already cleared (a duplicate or
    /// late notification).
    pub skipped: usize,
    /// Users that failed: their entries stay unacknowledged, so they are delivered again
    /// (`ClusterTier::claim_dead`) and park after three deliveries.
    pub failed: usize,
}

impl ClusterBatch {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &ClusterBatch) {
        self.written += other.written;
        self.conflicts += other.conflicts;
        self.skipped += other.skipped;
        self.failed += other.failed;
    }
}

impl Db {
    /// The cluster tier when the database was opened with one (`Config::cluster`).
    pub(super) fn cluster(&self) -> Option<&ClusterTier> {
        self.inner.cluster.as_ref()
    }

    /// Records `events` in the cluster tier: validated, item keys resolved in this node's
    /// catalog and kinds interned before anything is appended, then one atomic append per user
    /// (with its pending marker and notification), and this node's popularity counts.
    pub fn record_to_cluster(&self, tier: &ClusterTier, events: &[Interaction]) -> Result<()> {
        validate_interactions(events, &self.inner.config.limits)?;
        self.inner.poison.check()?;
        // Users in first-seen order, each with its events in arrival order, as on the local
        // backend: items resolve in that order (it decides which error a bad batch reports).
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut grouped: Vec<(&str, Vec<&Interaction>)> = Vec::new();
        for e in events {
            let at = *index.entry(&e.user).or_insert_with(|| {
                grouped.push((&e.user, Vec::new()));
                grouped.len() - 1
            });
            grouped[at].1.push(e);
        }
        // Every item first (nothing is written for a batch naming an unknown item), then the
        // kinds (a network call each on this node's first use, outside the catalog lock).
        let item_ids: Vec<Vec<u64>> = {
            let derived = self.inner.derived.read();
            grouped
                .iter()
                .map(|(_, evs)| {
                    evs.iter()
                        .map(|e| self.resolve_item(&derived, &e.item))
                        .collect::<Result<Vec<u64>>>()
                })
                .collect::<Result<_>>()?
        };
        let mut kinds: HashMap<&str, u32> = HashMap::new();
        for kind in events.iter().filter_map(|e| e.kind.as_deref()) {
            if !kinds.contains_key(kind) {
                let code = tier.kind_code(kind, super::interactions::MAX_KINDS)?;
                kinds.insert(kind, code);
            }
        }
        let mut deltas: HashMap<u64, i64> = HashMap::new();
        let mut by_user: Vec<(&str, Vec<ClusterEntry>)> = Vec::with_capacity(grouped.len());
        for ((user, evs), ids) in grouped.iter().zip(&item_ids) {
            let entries = evs
                .iter()
                .zip(ids)
                .map(|(e, &item_id)| {
                    *deltas.entry(item_id).or_default() += 1;
                    ClusterEntry {
                        item_id,
                        timestamp: e.timestamp,
                        kind: e.kind.as_deref().map_or(0, |k| kinds[k]),
                        weight: e.weight,
                    }
                })
                .collect();
            by_user.push((user, entries));
        }
        for (user, entries) in by_user {
            tier.record(user, &entries, rand::random::<u64>().max(1))?;
        }
        self.count_popular(deltas)
    }

    /// Adds recorded interactions to this node's popularity counts (the fallback's ranking).
    fn count_popular(&self, deltas: HashMap<u64, i64>) -> Result<()> {
        self.write(&[TreeId::Popular], |tx, _| {
            let mut effects = Effects::default();
            for (&item_id, &delta) in &deltas {
                let new = tx.popular(item_id)?.saturating_add_signed(delta);
                tx.set_popular(item_id, new)?;
                effects.counts.push((item_id, new));
            }
            Ok(((), effects))
        })
    }

    /// The history of `user` from the cluster: (version, item ids oldest first).
    pub(super) fn cluster_history_ids(
        &self,
        tier: &ClusterTier,
        user: &str,
    ) -> Result<Option<(u64, Vec<u64>)>> {
        Ok(tier
            .history(user)?
            .map(|h| (h.version, h.entries.iter().map(|e| e.item_id).collect())))
    }

    /// Refreshes the users of `deliveries` from the cluster with the attached model and
    /// acknowledges every delivery that needs no retry. Errors only when no model can run (nothing
    /// acknowledged then).
    pub fn refresh_cluster_batch(
        &self,
        tier: &ClusterTier,
        deliveries: &[Delivery],
    ) -> Result<ClusterBatch> {
        let model = self.attached()?;
        let mut stats = ClusterBatch::default();
        let mut done: Vec<Delivery> = Vec::with_capacity(deliveries.len());
        let mut retry: Vec<Delivery> = Vec::new();
        // One job per user (duplicates are acknowledged with it).
        let mut jobs: Vec<(Arc<str>, Vec<&Delivery>)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for d in deliveries {
            let at = *index.entry(&d.user).or_insert_with(|| {
                jobs.push((Arc::from(d.user.as_str()), Vec::new()));
                jobs.len() - 1
            });
            jobs[at].1.push(d);
        }
        let mut prepared: Vec<(Prepared, u64, u64, usize)> = Vec::new();
        for (j, (user, ds)) in jobs.iter().enumerate() {
            match tier.history(user) {
                Ok(Some(h)) if h.pending.is_some() => {
                    let ids = h.entries.iter().map(|e| e.item_id).collect();
                    match self.prepare_ids(&model, user, h.version, ids) {
                        Ok(p) => prepared.push((p, h.nonce, h.pending.unwrap_or(0), j)),
                        Err(_) => {
                            stats.failed += 1;
                            retry.extend(ds.iter().map(|d| (*d).clone()));
                        }
                    }
                }
                Ok(_) => {
                    stats.skipped += 1;
                    done.extend(ds.iter().map(|d| (*d).clone()));
                }
                Err(_) => {
                    stats.failed += 1;
                    retry.extend(ds.iter().map(|d| (*d).clone()));
                }
            }
        }
        let batch: Vec<Prepared> = prepared.iter().map(|(p, ..)| p.clone()).collect();
        let lists = self.cluster_lists(&model, &batch);
        for ((p, nonce, seq, j), list) in prepared.iter().zip(lists) {
            let (user, ds) = &jobs[*j];
            let written =
                list.and_then(|l| tier.write_list(user, p.history_version, *nonce, *seq, &l));
            match written {
                Ok(true) => stats.written += 1,
                Ok(false) => stats.conflicts += 1,
                Err(_) => {
                    stats.failed += 1;
                    retry.extend(ds.iter().map(|d| (*d).clone()));
                    continue;
                }
            }
            done.extend(ds.iter().map(|d| (*d).clone()));
        }
        tier.ack(&done)?;
        self.inner
            .refresh
            .counters
            .cluster_batch(&stats, jobs.len());
        Ok(stats)
    }

    /// The encoded list of each prepared user (the batch's model run, one user at a time when
    /// the batch fails, so one bad user fails alone).
    fn cluster_lists(
        &self,
        model: &crate::model::Model,
        batch: &[Prepared],
    ) -> Vec<Result<Vec<u8>>> {
        let k = self.inner.refresh.params.cache_k;
        let answers = match self.run_model(model, batch, k) {
            Ok(a) => a.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(_) => batch
                .iter()
                .map(|p| {
                    self.run_model(model, std::slice::from_ref(p), k)
                        .and_then(|mut a| a.pop().ok_or(Error::Inference("no answer".into())))
                })
                .collect(),
        };
        let computed_at_ms = super::now_ms();
        batch
            .iter()
            .zip(answers)
            .map(|(p, answer)| {
                let a = answer?;
                let derived = self.inner.derived.read();
                let rec = TopkRecord {
                    history_version: p.history_version,
                    sid_version: derived.sid_version().unwrap_or(0),
                    computed_at_ms,
                    model_id: model.manifest.model_id.clone(),
                    items: a
                        .items
                        .iter()
                        .filter(|(id, _)| derived.catalog.get(*id).is_some_and(|m| m.live))
                        .map(|&(id, s)| (id, s as f32))
                        .collect(),
                };
                Ok(rec.encode())
            })
            .collect()
    }

    /// `refresh_now` on the cluster: computes `user`'s list from its current history and
    /// compare-and-swaps it; retries when the history changes meanwhile (at most 3 times).
    pub(super) fn refresh_now_cluster(
        &self,
        tier: &ClusterTier,
        user: &str,
    ) -> Result<Recommendation> {
        let model = self.attached()?;
        for _ in 0..3 {
            let Some(h) = tier.history(user)? else {
                return Err(Error::UnknownUser {
                    key: user.to_string(),
                });
            };
            let ids = h.entries.iter().map(|e| e.item_id).collect();
            let p = self.prepare_ids(&model, user, h.version, ids)?;
            let list = self
                .cluster_lists(&model, std::slice::from_ref(&p))
                .pop()
                .unwrap_or_else(|| Err(Error::Inference("no answer".into())))?;
            let seq = h.pending.unwrap_or(0);
            if tier.write_list(user, h.version, h.nonce, seq, &list)? {
                let view = TopkView::parse(user.as_bytes(), &list)?;
                let rec = TopkRecord {
                    history_version: view.history_version(),
                    sid_version: view.sid_version(),
                    computed_at_ms: view.computed_at_ms(),
                    model_id: view.model_id().to_string(),
                    items: (0..view.len()).map(|i| view.item(i)).collect(),
                };
                return Ok(self.list_answer(user, &rec));
            }
        }
        Err(Error::Conflict(format!(
            "the history of {user:?} kept changing while its list was computed"
        )))
    }

    /// Answers `user` from the cluster tier with the shared rules of `read.rs`: the cached list
    /// in one round trip when there is one (`stale` unless computed from this exact history,
    /// model and tokenization), else the fallback over the user's history.
    pub fn recommend_from_cluster(
        &self,
        tier: &ClusterTier,
        user: &str,
        k: usize,
    ) -> Result<Recommendation> {
        let limits = &self.inner.config.limits;
        super::validate::validate_k(k, limits)?;
        validate_key("user", user, limits)?;
        let mut out = Recommendation::default();
        self.recommend_cluster(tier, user, k, &mut out)?;
        Ok(out)
    }

    /// `recommend_into` on the cluster tier (arguments validated).
    pub(super) fn recommend_cluster(
        &self,
        tier: &ClusterTier,
        user: &str,
        k: usize,
        out: &mut Recommendation,
    ) -> Result<()> {
        // The metadata only (one HMGET): the stamps make "current" exact, so no history entry
        // is needed unless the list is not current (then `whole` reads the history).
        let read = tier.read(user, 0)?;
        let has_history = read.version > 0;
        // A refresh is owed already when the marker is set (its record notified the queue);
        // otherwise (another model or tokenization) a read asks for one, once a model is
        // attached. A failure to ask does not fail the read: the next read asks again.
        let requeue = || {
            if read.pending.is_none() && has_history && self.inner.derived.read().model_id.is_some()
            {
                let _ = tier.request_refresh(user, true);
            }
        };
        if let Some((bytes, same_history)) = &read.list {
            let view = TopkView::parse(user.as_bytes(), bytes)?;
            // A list stamped with this exact history (version and nonce) was generated without
            // its items; the local backend's in-place tail check guards against an outdated
            // list that a version alone cannot tell apart, which the nonce rules out here.
            let in_tail = |_: u64| false;
            let fresh = Freshness {
                version: has_history.then_some(read.version),
                in_tail: &in_tail,
                stale: !same_history || read.pending.is_some(),
            };
            let whole = || Ok(self.cluster_history_ids(tier, user)?.map(|(_, ids)| ids));
            if self.answer_from_cache(user, &view, k, &fresh, whole, requeue, out)? {
                return Ok(());
            }
        } else {
            requeue();
        }
        let history = if has_history {
            self.cluster_history_ids(tier, user)?
        } else {
            None
        };
        self.answer_from_fallback(user, k, history, out)
    }
}

impl Db {
    /// Runs the sweep a model attach or a tokenization change requested (`Refresh::
    /// request_sweep`): every user of the cluster whose list is not this node's current one
    /// (another model or tokenization, or a deleted item) is queued, as the local backend's
    /// sweep queues them.
    pub(super) fn run_requested_cluster_sweep(&self, tier: &ClusterTier) -> Result<()> {
        let refresh = &self.inner.refresh;
        if !refresh.sweep_pending() {
            return Ok(());
        }
        let covered = refresh.sweep_started();
        let (model_id, sid_version) = {
            let d = self.inner.derived.read();
            (d.model_id.clone(), d.sid_version())
        };
        // Current: this node's model and tokenization, and every item still live (a deletion
        // asks for this sweep too), as the local sweep judges a list.
        let result = match model_id {
            Some(id) => tier
                .requeue_outdated(|user, bytes| {
                    TopkView::parse(user.as_bytes(), bytes).is_ok_and(|v| {
                        let derived = self.inner.derived.read();
                        v.model_id() == &*id
                            && Some(v.sid_version()) == sid_version
                            && (0..v.len())
                                .all(|i| derived.catalog.get(v.item(i).0).is_some_and(|m| m.live))
                    })
                })
                .map(|_| ()),
            None => Ok(()),
        };
        refresh.sweep_finished(covered);
        result
    }

    /// `history` on the cluster tier.
    pub(super) fn history_from_cluster(
        &self,
        tier: &ClusterTier,
        user: &str,
    ) -> Result<crate::History> {
        let Some(h) = tier.history(user)? else {
            return Err(Error::UnknownUser {
                key: user.to_string(),
            });
        };
        let mut entries = Vec::with_capacity(h.entries.len());
        for e in &h.entries {
            let kind = tier.kind_name(e.kind)?;
            let derived = self.inner.derived.read();
            let meta = derived.catalog.get(e.item_id).ok_or_else(|| {
                Error::corruption(
                    "cluster histories",
                    user.as_bytes(),
                    format!(
                        "entry names item id {} that this node's catalog does not hold \
                         (the nodes' catalogs differ: docs/cluster.md)",
                        e.item_id
                    ),
                )
            })?;
            entries.push(crate::HistoryEntry {
                item: meta.key.to_string(),
                item_id: e.item_id,
                live: meta.live,
                timestamp: e.timestamp,
                kind,
                weight: e.weight,
            });
        }
        Ok(crate::History {
            user: user.to_string(),
            version: h.version,
            recorded: h.recorded,
            entries,
        })
    }

    /// `wait_idle_timeout` on the cluster tier: re-notifies every pending marker (a scan of
    /// every master), refreshes on this thread what the queue holds (beside any worker threads
    /// or processes), then waits until every entry is acknowledged. Fails, as on the local
    /// backend, when entries are queued but this node has no usable model.
    pub(super) fn wait_idle_cluster(
        &self,
        tier: &ClusterTier,
        timeout: std::time::Duration,
    ) -> Result<bool> {
        let started = std::time::Instant::now();
        // A marker whose notification was lost (a crash or a failover between the record and
        // it) counts as queued: every marker is re-notified first (a scan of every master).
        tier.sweep(0)?;
        let mut worker = super::cluster_worker::ClusterWorker::new(
            format!("wait-{}", super::cluster_worker::consumer_id()),
            self.inner.refresh.params.max_batch,
        );
        loop {
            self.inner.poison.check()?;
            self.run_requested_cluster_sweep(tier)?;
            // As on the local backend: users queued but no usable model here is an error
            // (nothing this node runs could refresh them), not a wait.
            let did = match self.attached() {
                Ok(_) => worker.step(self, tier)?,
                Err(e) => return if tier.queue_idle()? { Ok(true) } else { Err(e) },
            };
            if did.is_none() {
                if tier.queue_idle()? {
                    return Ok(true);
                }
                // Entries are held by another worker.
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if started.elapsed() >= timeout {
                return Ok(false);
            }
        }
    }
}
