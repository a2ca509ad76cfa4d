//! The `Db` side of the Redis Cluster tier (`crate::cluster`): this node's catalog, codes and
//! model serve users whose histories, lists and refresh queue live in the cluster. Recording
//! resolves item keys locally and appends in the cluster; a refresh batch reads each history
//! with its (version, nonce) stamp, runs the attached model and compare-and-swaps the list;
//! a read answers from the cluster's list in one round trip.
//!
//! Not yet here (see docs/cluster.md): `Db::open` with the cluster as its per-user tier (these
//! are explicit calls beside the local tier), interaction kinds (stored as kind 0), catalog
//! replication between nodes (every node must hold the same catalog and tokenization; a list
//! stamped with another model or tokenization is never served as current).

use std::collections::HashMap;
use std::sync::Arc;

use super::generate::Prepared;
use super::validate::{validate_interactions, validate_key};
use super::Db;
use crate::cluster::{ClusterEntry, ClusterTier, Delivery};
use crate::store::{TopkRecord, TopkView};
use crate::{Interaction, ListStamps, Recommendation, Result, Source};

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

impl Db {
    /// Records `events` in the cluster tier: validated, item keys resolved in this node's
    /// catalog, then one atomic append per user (with its pending marker and notification).
    pub fn record_to_cluster(&self, tier: &ClusterTier, events: &[Interaction]) -> Result<()> {
        validate_interactions(events, &self.inner.config.limits)?;
        let mut by_user: Vec<(&str, Vec<ClusterEntry>)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        {
            let derived = self.inner.derived.read();
            for e in events {
                let item_id = self.resolve_item(&derived, &e.item)?;
                let at = *index.entry(&e.user).or_insert_with(|| {
                    by_user.push((&e.user, Vec::new()));
                    by_user.len() - 1
                });
                by_user[at].1.push(ClusterEntry {
                    item_id,
                    timestamp: e.timestamp,
                    kind: 0,
                    weight: e.weight,
                });
            }
        }
        for (user, entries) in by_user {
            tier.record(user, &entries, rand::random::<u64>().max(1))?;
        }
        Ok(())
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
        let k = self.inner.refresh.params.cache_k;
        let sid_version = self.inner.derived.read().sid_version().unwrap_or(0);
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
        let answers = match self.run_model(&model, &batch, k) {
            Ok(a) => a.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(_) => batch
                .iter()
                .map(|p| {
                    self.run_model(&model, std::slice::from_ref(p), k)
                        .and_then(|mut a| {
                            a.pop().ok_or(crate::Error::Inference("no answer".into()))
                        })
                })
                .collect(),
        };
        let computed_at_ms = super::now_ms();
        for ((p, nonce, seq, j), answer) in prepared.iter().zip(answers) {
            let (user, ds) = &jobs[*j];
            let written = answer.and_then(|a| {
                let derived = self.inner.derived.read();
                let rec = TopkRecord {
                    history_version: p.history_version,
                    sid_version,
                    computed_at_ms,
                    model_id: model.manifest.model_id.clone(),
                    items: a
                        .items
                        .iter()
                        .filter(|(id, _)| derived.catalog.get(*id).is_some_and(|m| m.live))
                        .map(|&(id, s)| (id, s as f32))
                        .collect(),
                };
                drop(derived);
                tier.write_list(user, p.history_version, *nonce, *seq, &rec.encode())
            });
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
        Ok(stats)
    }

    /// Answers `user` from the cluster tier in one round trip: the cached list when there is
    /// one (`stale` when it was not computed from the current history, model or tokenization),
    /// else this node's popularity list.
    pub fn recommend_from_cluster(
        &self,
        tier: &ClusterTier,
        user: &str,
        k: usize,
    ) -> Result<Recommendation> {
        let limits = &self.inner.config.limits;
        super::validate::validate_k(k, limits)?;
        validate_key("user", user, limits)?;
        let read = tier.read(user, 32)?;
        let recent: Vec<u64> = read.tail.iter().map(|e| e.item_id).collect();
        if let Some((bytes, same_history)) = &read.list {
            let view = TopkView::parse(user.as_bytes(), bytes)?;
            let (current, items) = {
                let d = self.inner.derived.read();
                let current = d.model_id.as_deref() == Some(view.model_id())
                    && d.sid_version() == Some(view.sid_version())
                    && view.history_version() == read.version;
                let items: Vec<(u64, f64)> = (0..view.len())
                    .map(|i| view.item(i))
                    .filter(|(id, _)| !recent.contains(id))
                    .map(|(id, s)| (id, f64::from(s)))
                    .collect();
                (current, items)
            };
            let mut items = self.name_live(items.into_iter());
            items.truncate(k);
            // A newer history has a pending marker and a queue entry already (its record wrote
            // them); a list from another model or tokenization waits for a re-record (not yet
            // re-queued by the cluster tier, docs/cluster.md).
            let stale = !current || !same_history || read.pending.is_some();
            if !items.is_empty() {
                return Ok(Recommendation {
                    user: user.to_string(),
                    source: Source::Model,
                    history_version: view.history_version(),
                    stale,
                    stamps: Some(ListStamps {
                        model_id: view.model_id().to_string(),
                        sid_version: view.sid_version(),
                        computed_at_ms: view.computed_at_ms(),
                    }),
                    items,
                });
            }
        }
        let items = self.popular(k, &|id| recent.contains(&id));
        Ok(Recommendation {
            user: user.to_string(),
            source: Source::Popularity,
            history_version: read.version,
            stale: false,
            stamps: None,
            items,
        })
    }
}
