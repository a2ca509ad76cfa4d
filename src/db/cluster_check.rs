//! `check()` of the cluster tier's per-user state, for a node opened with `Config::cluster`:
//! a scan of every master (a user written during the scan may be seen or not).
//!
//! - C1 every history and metadata hash decodes; entries are in timestamp order, at most the
//!   history limit, and name items of this node's catalog (else the nodes' catalogs differ);
//! - C2 every cached list decodes, and names items of the catalog;
//! - C3 a list stamped with the history's current nonce has the history's version and holds
//!   no item of the history (it was generated without them).

use std::collections::{BTreeMap, HashSet};

use super::Db;
use crate::cluster::ClusterTier;
use crate::store::records::ItemRecord;
use crate::store::TopkView;
use crate::Result;

impl Db {
    /// Checks the cluster's users; returns (users, history entries) scanned.
    pub(super) fn check_cluster(
        &self,
        tier: &ClusterTier,
        items: &BTreeMap<u64, ItemRecord>,
        problem: &mut dyn FnMut(String),
    ) -> Result<(u64, u64)> {
        let limit = self.inner.config.limits.history_limit;
        let (mut users, mut entries) = (0u64, 0u64);
        tier.for_each_user(|user, _| {
            users += 1;
            let read = match tier.read(user, limit) {
                Ok(r) => r,
                Err(crate::Error::Cluster(e)) => return Err(crate::Error::Cluster(e)),
                Err(e) => {
                    problem(format!("C1 user {user:?}: {e}"));
                    return Ok(());
                }
            };
            entries += read.tail.len() as u64;
            if read.tail.len() > limit {
                problem(format!(
                    "C1 user {user:?}: {} history entries over the limit of {limit}",
                    read.tail.len()
                ));
            }
            if read
                .tail
                .windows(2)
                .any(|w| w[0].timestamp > w[1].timestamp)
            {
                problem(format!(
                    "C1 user {user:?}: history entries out of timestamp order"
                ));
            }
            if let Some(e) = read.tail.iter().find(|e| !items.contains_key(&e.item_id)) {
                problem(format!(
                    "C1 user {user:?}: history names item id {} that this node's catalog does \
                     not hold (the nodes' catalogs differ: docs/cluster.md)",
                    e.item_id
                ));
            }
            let Some((bytes, same_nonce)) = &read.list else {
                return Ok(());
            };
            let view = match TopkView::parse(user.as_bytes(), bytes) {
                Ok(v) => v,
                Err(e) => {
                    problem(format!("C2 user {user:?}: {e}"));
                    return Ok(());
                }
            };
            if let Some(id) = (0..view.len())
                .map(|i| view.item(i).0)
                .find(|id| !items.contains_key(id))
            {
                problem(format!(
                    "C2 user {user:?}: the cached list names item id {id} that this node's \
                     catalog does not hold"
                ));
            }
            if *same_nonce {
                if view.history_version() != read.version {
                    problem(format!(
                        "C3 user {user:?}: a list stamped with the current nonce has history \
                         version {}, the history {}",
                        view.history_version(),
                        read.version
                    ));
                }
                let seen: HashSet<u64> = read.tail.iter().map(|e| e.item_id).collect();
                if let Some(id) = (0..view.len())
                    .map(|i| view.item(i).0)
                    .find(|id| seen.contains(id))
                {
                    problem(format!(
                        "C3 user {user:?}: a current list holds item id {id} of the history"
                    ));
                }
            }
            Ok(())
        })?;
        Ok((users, entries))
    }
}
