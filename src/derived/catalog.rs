//! Item id -> (key, live): the in-memory name table of the catalog.
//!
//! Item ids are dense (1, 2, 3, ... in allocation order, never reused), so the table is a vector
//! indexed by id: a lookup is one bounds check, no hashing. `Derived::load` refuses ids that are
//! not dense, so a corrupt key can never make this vector huge.

use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ItemMeta {
    pub key: Arc<str>,
    pub live: bool,
}

#[derive(Debug, Default, PartialEq)]
pub(crate) struct Catalog {
    /// Slot `id - 1` holds item `id`.
    items: Vec<ItemMeta>,
}

impl Catalog {
    /// The number of item ids handed out (live and deleted).
    pub(crate) fn len(&self) -> u64 {
        self.items.len() as u64
    }

    /// Sets item `id`: either an existing id or the next one (`len() + 1`).
    pub(crate) fn insert(&mut self, id: u64, key: Arc<str>, live: bool) {
        let meta = ItemMeta { key, live };
        match id.checked_sub(1).map(|i| i as usize) {
            Some(i) if i < self.items.len() => self.items[i] = meta,
            Some(i) if i == self.items.len() => self.items.push(meta),
            _ => debug_assert!(
                false,
                "item id {id} is not dense (table holds {})",
                self.items.len()
            ),
        }
    }

    pub(crate) fn get(&self, id: u64) -> Option<&ItemMeta> {
        self.items.get(id.checked_sub(1)? as usize)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &ItemMeta)> + '_ {
        self.items
            .iter()
            .enumerate()
            .map(|(i, m)| (i as u64 + 1, m))
    }
}
