//! `check()` for stored numbers and cached lists the other checks do not look into:
//! - V1 every history weight is finite;
//! - V2 every stored vector holds only finite values;
//! - V3 every cached-list score is finite;
//! - V4 a cached list stamped with the user's current history version holds no item of that
//!   history (the list is computed without them; `recommend` checks the history's tail on
//!   every cached answer, filters and treats such a list as stale; an older history item in a
//!   current-looking list is damage only this check sees).
//!
//! Every write path refuses NaN and infinities, so any of these means damaged files or a bug.

use std::collections::HashMap;

use super::Db;
use crate::store::records::{self, StoredHistory};
use crate::store::{keys, TopkView, TreeId};
use crate::Result;

impl Db {
    pub(super) fn check_values(
        &self,
        dims: &HashMap<String, usize>,
        problem: &mut dyn FnMut(String),
    ) -> Result<()> {
        let store = &self.inner.store;
        for entry in store.tree(TreeId::Histories).iter() {
            let (k, v) = entry?;
            // Undecodable records are reported by F1.
            let Ok(rec) = StoredHistory::from_head(store, &k, v) else {
                continue;
            };
            if let Some(e) = rec.entries().iter().find(|e| !e.weight.is_finite()) {
                problem(format!(
                    "V1 history of user {} holds weight {} (item {}, timestamp {})",
                    crate::error::printable_key(&k),
                    e.weight,
                    e.item_id,
                    e.timestamp
                ));
            }
        }
        for entry in store.tree(TreeId::Vectors).iter() {
            let (k, v) = entry?;
            let Ok((id, name)) = keys::parse_vector(&k) else {
                continue;
            };
            let Some(dim) = dims.get(&name) else { continue };
            let Ok(values) = records::decode_vector(&k, &v, *dim) else {
                continue;
            };
            if let Some(x) = values.iter().find(|x| !x.is_finite()) {
                problem(format!(
                    "V2 vector {name:?} of item {id} holds {x}, not a finite number"
                ));
            }
        }
        for entry in store.tree(TreeId::Topk).iter() {
            let (k, v) = entry?;
            let Ok(view) = TopkView::parse(&k, &v) else {
                continue;
            };
            let user = crate::error::printable_key(&k);
            if let Some(i) = (0..view.len()).find(|i| !view.item(*i).1.is_finite()) {
                let (id, score) = view.item(i);
                problem(format!(
                    "V3 cached list of user {user} scores item {id} {score}, not a finite number"
                ));
            }
            let Ok(Some(history)) = StoredHistory::load(store, &k) else {
                continue;
            };
            if history.version() != view.history_version() {
                continue;
            }
            if let Some(id) = (0..view.len())
                .map(|i| view.item(i).0)
                .find(|id| history.contains(*id))
            {
                problem(format!(
                    "V4 cached list of user {user} is stamped with the current history version \
                     {} but recommends item {id}, which is in the history",
                    history.version()
                ));
            }
        }
        Ok(())
    }
}
