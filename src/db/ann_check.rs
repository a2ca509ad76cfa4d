//! Invariant 6 in `check()`: every ANN index maps exactly the live items holding its vector
//! (each to one point), its graph holds every mapped point, and the catalog version it reflects
//! is at most the catalog's.

use std::collections::BTreeMap;

use super::Db;
use crate::store::records::ItemRecord;

impl Db {
    /// Appends one line per violation of invariant 6 (prefix `I6`).
    pub(super) fn check_ann(
        &self,
        items: &BTreeMap<u64, ItemRecord>,
        catalog_version: Option<u64>,
        problem: &mut dyn FnMut(String),
    ) {
        let slots = self.inner.ann.read();
        for (name, slot) in slots.iter() {
            let index = &slot.index;
            let points = index.graph().len();
            index.with_map(|map| {
                if let Some(v) = catalog_version {
                    if map.catalog_version > v {
                        problem(format!(
                            "I6 ANN index {name:?} reflects catalog version {}, newer than the catalog's {v}",
                            map.catalog_version
                        ));
                    }
                }
                if points != map.items.len() {
                    problem(format!(
                        "I6 ANN index {name:?}: the graph holds {points} points, the id map {}",
                        map.items.len()
                    ));
                }
                let live_points = map.items.iter().filter(|&&i| i != 0).count();
                if live_points != map.by_item.len() || map.items.len() - live_points != map.dead {
                    problem(format!(
                        "I6 ANN index {name:?}: {live_points} live points, {} mapped items, {} tombstones counted",
                        map.by_item.len(),
                        map.dead
                    ));
                }
                for (&item, &internal) in &map.by_item {
                    if map.items.get(internal) != Some(&item) {
                        problem(format!("I6 ANN index {name:?}: item {item} maps to point {internal} which names another item"));
                    }
                    match items.get(&item) {
                        Some(rec) if rec.live && rec.vector_names.contains(name) => {}
                        _ => problem(format!(
                            "I6 ANN index {name:?} returns item {item}, which is deleted or lacks the vector"
                        )),
                    }
                }
                for (id, rec) in items {
                    if rec.live && rec.vector_names.contains(name) && !map.by_item.contains_key(id) {
                        problem(format!(
                            "I6 live item {id} holds vector {name:?} but is missing from its ANN index"
                        ));
                    }
                }
            });
        }
    }
}
