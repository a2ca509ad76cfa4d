//! Item id -> (key, live): the in-memory name table of the catalog.

use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ItemMeta {
    pub key: Arc<str>,
    pub live: bool,
}

#[derive(Debug, Default, PartialEq)]
pub(crate) struct Catalog {
    items: HashMap<u64, ItemMeta>,
}

impl Catalog {
    pub(crate) fn insert(&mut self, id: u64, key: Arc<str>, live: bool) {
        self.items.insert(id, ItemMeta { key, live });
    }

    pub(crate) fn get(&self, id: u64) -> Option<&ItemMeta> {
        self.items.get(&id)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &ItemMeta)> + '_ {
        self.items.iter().map(|(id, m)| (*id, m))
    }
}
