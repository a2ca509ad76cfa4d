//! `check()` for the cached lists and the refresh queue:
//! - R1 every `topk` and `stale` record decodes and belongs to a user with a history;
//! - I3 (stored side) every item of a cached list exists in the catalog (deleted ones are
//!   filtered at read);
//! - I4 a list's history stamp is at most the user's history version, and when it is older the
//!   user has a `stale` record;
//! - R2 every `stale` record is queued in memory, with the record's seq.

use std::collections::BTreeMap;

use super::Db;
use crate::store::records::{HistoryView, ItemRecord};
use crate::store::{StaleRecord, TopkView, TreeId};
use crate::Result;

impl Db {
    pub(super) fn check_refresh(
        &self,
        items: &BTreeMap<u64, ItemRecord>,
        problem: &mut dyn FnMut(String),
    ) -> Result<()> {
        let store = &self.inner.store;
        let version_of = |user: &[u8]| -> Result<Option<u64>> {
            Ok(match store.get(TreeId::Histories, user)? {
                Some(b) => HistoryView::parse(user, &b).ok().map(|h| h.version()),
                None => None,
            })
        };
        for entry in store.tree(TreeId::Topk).iter() {
            let (k, v) = entry?;
            let name = crate::error::printable_key(&k);
            let view = match TopkView::parse(&k, &v) {
                Ok(view) => view,
                Err(e) => {
                    problem(format!("R1 {e}"));
                    continue;
                }
            };
            for i in 0..view.len() {
                let id = view.item(i).0;
                if !items.contains_key(&id) {
                    problem(format!(
                        "I3 cached list of user {name} names missing item {id}"
                    ));
                }
            }
            let Some(version) = version_of(&k)? else {
                problem(format!("R1 cached list of user {name}, who has no history"));
                continue;
            };
            let stamp = view.history_version();
            if stamp > version {
                problem(format!(
                    "I4 cached list of user {name} is stamped with history version {stamp}, \
                     newer than the history's {version}"
                ));
            } else if stamp < version && store.get(TreeId::Stale, &k)?.is_none() {
                problem(format!(
                    "I4 cached list of user {name} is from history version {stamp} (now \
                     {version}) and the user is not queued"
                ));
            }
        }
        for entry in store.tree(TreeId::Stale).iter() {
            let (k, v) = entry?;
            let name = crate::error::printable_key(&k);
            let rec = match StaleRecord::decode(&k, &v) {
                Ok(r) => r,
                Err(e) => {
                    problem(format!("R1 {e}"));
                    continue;
                }
            };
            if version_of(&k)?.is_none() {
                problem(format!("R1 user {name} is queued but has no history"));
            }
            let queued = std::str::from_utf8(&k)
                .ok()
                .and_then(|u| self.inner.refresh.queue.durable_seq(u));
            match queued {
                Some(seq) if seq >= rec.seq => {}
                Some(seq) => problem(format!(
                    "R2 user {name} is queued in memory with seq {seq}, older than its record's {}",
                    rec.seq
                )),
                None => problem(format!(
                    "R2 user {name} has a stale record but is not queued in memory"
                )),
            }
        }
        Ok(())
    }
}
