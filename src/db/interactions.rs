//! Recording interactions and reading histories.

use std::collections::HashMap;
use std::sync::Arc;

use super::validate::{validate_interactions, validate_key};
use super::Db;
use crate::derived::{Derived, Effects};
use crate::store::records::{self, EntryRecord, HistoryRecord, HistoryView};
use crate::store::{keys, Reason, StaleRecord, TreeId, Tx, TxResult};
use crate::{Error, History, HistoryEntry, Interaction, Result};

/// Distinct interaction kinds a database accepts (the table is stored in one meta record).
pub(crate) const MAX_KINDS: usize = 4096;

impl Db {
    /// Records a batch of interactions atomically: all are stored or, on any error, none.
    ///
    /// Every item must exist and be live. Each touched user's history version is bumped once per
    /// batch; histories stay ordered by timestamp (ties in arrival order) and keep the most
    /// recent `history_limit` entries. Popularity is updated in the same transaction.
    pub fn record_interactions(&self, events: &[Interaction]) -> Result<()> {
        validate_interactions(events, &self.inner.config.limits)?;
        let history_limit = self.inner.config.limits.history_limit;
        // Group by user, keeping first-seen order of users and arrival order within a user.
        let mut order: Vec<&str> = Vec::new();
        let mut by_user: HashMap<&str, Vec<&Interaction>> = HashMap::new();
        for e in events {
            by_user
                .entry(e.user.as_str())
                .or_insert_with(|| {
                    order.push(e.user.as_str());
                    Vec::new()
                })
                .push(e);
        }
        // Seqs for the users' `stale` records (a retried transaction reuses them).
        let base_seq = self.inner.refresh.queue.reserve_seqs(order.len());
        let enqueued_at_ms = super::refresh::now_ms();
        self.write(
            &[
                TreeId::Meta,
                TreeId::ItemKeys,
                TreeId::Histories,
                TreeId::Popular,
                TreeId::Stale,
            ],
            |tx, derived| {
                // Update trigger (invariant 4): once a model was attached, a history change
                // queues the user in the same transaction.
                let trigger = derived.model_id.is_some();
                let mut queued = Vec::new();
                let mut counts = tx.counts()?;
                let mut kinds = tx.kinds()?;
                let kinds_before = kinds.len();
                let mut item_ids: HashMap<&str, u64> = HashMap::new();
                let mut deltas: HashMap<u64, i64> = HashMap::new();
                for user in &order {
                    let mut rec = match tx.history(user)? {
                        Some(rec) => rec,
                        None => {
                            counts.users += 1;
                            HistoryRecord::default()
                        }
                    };
                    let before = rec.entries.len();
                    for e in &by_user[user] {
                        let item_id = resolve_item(tx, derived, &mut item_ids, &e.item)?;
                        let kind = intern_kind(&mut kinds, e.kind.as_deref())?;
                        rec.entries.push(EntryRecord {
                            item_id,
                            timestamp: e.timestamp,
                            kind,
                            weight: e.weight,
                        });
                        *deltas.entry(item_id).or_default() += 1;
                    }
                    let added = rec.entries.len() - before;
                    // Stable: equal timestamps keep arrival order.
                    rec.entries.sort_by_key(|en| en.timestamp);
                    let evict = rec.entries.len().saturating_sub(history_limit);
                    for old in rec.entries.drain(..evict) {
                        *deltas.entry(old.item_id).or_default() -= 1;
                    }
                    rec.recorded += added as u64;
                    rec.version += 1;
                    counts.recorded += added as u64;
                    counts.interactions = counts.interactions + added as u64 - evict as u64;
                    tx.insert(TreeId::Histories, user.as_bytes(), rec.encode())?;
                    if trigger {
                        let seq = base_seq + queued.len() as u64;
                        let stale = StaleRecord {
                            seq,
                            history_version: rec.version,
                            enqueued_at_ms,
                            reason: Reason::History,
                        };
                        tx.insert(TreeId::Stale, user.as_bytes(), stale.encode())?;
                        queued.push((Arc::from(*user), seq));
                    }
                }
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
                if kinds.len() != kinds_before {
                    tx.insert(
                        TreeId::Meta,
                        keys::META_KINDS,
                        records::encode_kinds(&kinds),
                    )?;
                    effects.kinds = Some(kinds);
                }
                tx.set_counts(&counts)?;
                Ok(((), effects))
            },
        )
    }

    /// Every user with a history, in key order (a scan of the histories tree's keys).
    pub fn users(&self) -> impl Iterator<Item = Result<String>> + '_ {
        self.inner
            .store
            .tree(TreeId::Histories)
            .iter()
            .keys()
            .map(|k| keys::parse_text("histories", &k?))
    }

    /// The user's history, oldest first.
    ///
    /// Fails with [`Error::UnknownUser`] when no interaction was ever recorded for `user`.
    pub fn history(&self, user: &str) -> Result<History> {
        validate_key("user", user, &self.inner.config.limits)?;
        self.inner.poison.check()?;
        let Some(bytes) = self.inner.store.get(TreeId::Histories, user.as_bytes())? else {
            return Err(Error::UnknownUser {
                key: user.to_string(),
            });
        };
        let rec = HistoryView::parse(user.as_bytes(), &bytes)?;
        let derived = self.inner.derived.read();
        let mut entries = Vec::with_capacity(rec.len());
        for e in (0..rec.len()).map(|i| rec.entry(i)) {
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

fn resolve_item<'a>(
    tx: &Tx<'_>,
    derived: &Derived,
    cache: &mut HashMap<&'a str, u64>,
    key: &'a str,
) -> TxResult<u64> {
    if let Some(id) = cache.get(key) {
        return Ok(*id);
    }
    let Some(id) = tx.item_id(key)? else {
        return Err(Error::UnknownItem {
            key: key.to_string(),
        }
        .into());
    };
    match derived.catalog.get(id) {
        Some(meta) if meta.live => {
            cache.insert(key, id);
            Ok(id)
        }
        Some(_) => Err(Error::DeletedItem {
            key: key.to_string(),
        }
        .into()),
        None => Err(Error::corruption(
            "item_keys",
            key.as_bytes(),
            "points to an item the catalog does not hold",
        )
        .into()),
    }
}

fn intern_kind(kinds: &mut Vec<String>, kind: Option<&str>) -> TxResult<u32> {
    let Some(kind) = kind else { return Ok(0) };
    if let Some(pos) = kinds.iter().position(|k| k == kind) {
        return Ok(pos as u32 + 1);
    }
    if kinds.len() >= MAX_KINDS {
        return Err(Error::InvalidArgument(format!(
            "kind {kind:?} would be distinct kind number {}, over the limit of {MAX_KINDS}",
            kinds.len() + 1
        ))
        .into());
    }
    kinds.push(kind.to_string());
    Ok(kinds.len() as u32)
}
