//! The ANN layer on the facade: build, drop, load on open, keep in step with catalog writes,
//! query by vector.
//!
//! Builds and rebuilds run under the writer lock: writes wait for them, reads do not (searches
//! keep using the previous index until the new one is installed). A dump generation is written
//! and synced, then its manifest is committed in `meta` (the atomic switch), then older
//! generations are deleted. On open a dump is loaded only if it matches its manifest and
//! checksums; otherwise the index is rebuilt from the store and the reason kept for `stats()`.

use std::collections::HashSet;
use std::sync::Arc;

use super::validate::{validate_k, validate_vector_name};
use super::{Db, Inner};
use crate::ann::{dump, normalize, AnnIndex, AnnInfo, AnnOrigin, AnnSlot, Hit};
use crate::store::records::{self, ItemRecord};
use crate::store::{keys, AnnManifest, TreeId};
use crate::{Error, Result, ScoredItem};

/// One catalog write's vector changes: (item, vector name, new value or `None` if removed).
pub(super) type VectorChanges = Vec<(u64, String, Option<Vec<f32>>)>;

impl Db {
    /// Builds (or rebuilds) the ANN index over item vector `vector` from the store, persists it
    /// and keeps it up to date with later writes. Blocks writers while it runs.
    pub fn build_ann(&self, vector: &str) -> Result<AnnInfo> {
        self.build_ann_with_progress(vector, &mut |_, _| {})
    }

    /// [`Db::build_ann`], calling `progress(inserted, total)` as points are inserted.
    pub fn build_ann_with_progress(
        &self,
        vector: &str,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<AnnInfo> {
        validate_vector_name(vector)?;
        self.inner.poison.check()?;
        let _writer = self.inner.writer.lock();
        rebuild_locked(&self.inner, vector, AnnOrigin::Built, None, progress)
    }

    /// Drops the ANN index of `vector`: its manifest, its files and its memory. Returns false
    /// when there was none. A vector named by `Config::ann_maintain` is built again on the next
    /// open.
    pub fn drop_ann(&self, vector: &str) -> Result<bool> {
        validate_vector_name(vector)?;
        self.inner.poison.check()?;
        let _writer = self.inner.writer.lock();
        let key = keys::ann(vector);
        let had_manifest = self.inner.store.get(TreeId::Meta, &key)?.is_some();
        if had_manifest {
            self.inner.store.transact(&[TreeId::Meta], |tx| {
                tx.remove(TreeId::Meta, &key)?;
                Ok(())
            })?;
            self.flush_store()?;
        }
        let had_index = self.inner.ann.write().remove(vector).is_some();
        dump::remove_other_generations(&dump::ann_dir(self.path()), vector, None);
        Ok(had_manifest || had_index)
    }

    /// The indexes in memory, by vector name.
    pub fn ann_info(&self) -> Vec<AnnInfo> {
        let slots = self.inner.ann.read();
        let mut out: Vec<AnnInfo> = slots.values().map(AnnSlot::info).collect();
        out.sort_by(|a, b| a.vector.cmp(&b.vector));
        out
    }

    /// The `k` live items whose vector `vector` is nearest to `query` by cosine similarity (the
    /// score), best first, from the ANN index ([`Error::NoAnnIndex`] without one).
    pub fn recommend_by_vector(
        &self,
        vector: &str,
        query: &[f32],
        k: usize,
    ) -> Result<Vec<ScoredItem>> {
        validate_vector_name(vector)?;
        validate_k(k, self.limits())?;
        self.inner.poison.check()?;
        let index = self.ann_index(vector)?;
        if query.len() != index.dim {
            return Err(Error::InvalidArgument(format!(
                "query vector has dimension {}, vector {vector:?} has dimension {}",
                query.len(),
                index.dim
            )));
        }
        if query.iter().any(|x| !x.is_finite()) {
            return Err(Error::InvalidArgument(
                "query vector holds NaN or an infinity".into(),
            ));
        }
        let mut q = query.to_vec();
        normalize(&mut q);
        let ef = self.inner.config.ann.ef_search;
        let hits = index.search(&q, k, ef, &|_| false, 0);
        Ok(self.name_hits(hits))
    }

    pub(super) fn ann_index(&self, vector: &str) -> Result<Arc<AnnIndex>> {
        self.inner
            .ann
            .read()
            .get(vector)
            .map(|s| Arc::clone(&s.index))
            .ok_or_else(|| Error::NoAnnIndex {
                vector: vector.to_string(),
            })
    }

    /// Names hits from the catalog, dropping any item not live there (invariant 6 holds even
    /// between a commit and the index update that follows it).
    pub(super) fn name_hits(&self, hits: Vec<Hit>) -> Vec<ScoredItem> {
        let derived = self.inner.derived.read();
        hits.into_iter()
            .filter_map(|h| {
                let meta = derived.catalog.get(h.item).filter(|m| m.live)?;
                Some(ScoredItem {
                    key: meta.key.to_string(),
                    item_id: h.item,
                    score: f64::from(h.similarity),
                })
            })
            .collect()
    }

    /// Applies one committed write to the indexes. Runs under the writer lock, after the derived
    /// state. The write is committed: failures here are recorded, never returned.
    pub(super) fn ann_after_write(&self, changes: &VectorChanges, version: Option<u64>) {
        let mut over = Vec::new();
        {
            let slots = self.inner.ann.read();
            if slots.is_empty() && self.inner.config.ann_maintain.is_empty() {
                return;
            }
            for (item, name, value) in changes {
                if let Some(slot) = slots.get(name) {
                    match value {
                        Some(v) => slot.index.upsert(*item, v),
                        None => slot.index.remove(*item),
                    }
                }
            }
            for slot in slots.values() {
                if let Some(v) = version {
                    slot.index.set_catalog_version(v);
                }
                if slot
                    .index
                    .needs_rebuild(self.inner.config.ann.rebuild_tombstone_ratio)
                {
                    let (points, dead, _) = slot.index.counts();
                    over.push((
                        slot.index.vector.clone(),
                        format!("{dead} tombstones among {points} points passed the threshold"),
                    ));
                }
            }
            // A maintained vector gets its index with its first vectors.
            let touched: HashSet<&str> = changes.iter().map(|(_, n, _)| n.as_str()).collect();
            for name in &self.inner.config.ann_maintain {
                if !slots.contains_key(name) && touched.contains(name.as_str()) {
                    over.push((name.clone(), String::new()));
                }
            }
        }
        for (name, reason) in over {
            let (origin, reason) = if reason.is_empty() {
                (AnnOrigin::Built, None)
            } else {
                (AnnOrigin::Rebuilt, Some(reason))
            };
            if let Err(e) = rebuild_locked(&self.inner, &name, origin, reason, &mut |_, _| {}) {
                self.note_ann_failure(&name, &e);
            }
        }
    }

    fn note_ann_failure(&self, name: &str, e: &Error) {
        if let Some(slot) = self.inner.ann.write().get_mut(name) {
            slot.reason = Some(format!("rebuild failed, kept the previous index: {e}"));
        }
    }

    /// Loads (or rebuilds) every persisted index and builds the maintained ones. Called by
    /// `open` before the handle is shared.
    pub(super) fn ann_open(&self) -> Result<()> {
        let inner = &self.inner;
        let _writer = inner.writer.lock();
        let mut names = Vec::new();
        for entry in inner
            .store
            .tree(TreeId::Meta)
            .scan_prefix(keys::META_ANN_PREFIX)
        {
            let (k, v) = entry?;
            let name = keys::parse_text("meta", &k[keys::META_ANN_PREFIX.len()..])?;
            names.push((name, k, v));
        }
        for (name, k, v) in names {
            let dim = inner.derived.read().dims.get(&name).copied();
            let loaded = match (AnnManifest::decode(&k, &v), dim) {
                (Err(e), _) => Err(format!("unreadable manifest: {e}")),
                (_, None) => Err(format!("vector {name:?} has no stored dimension")),
                (Ok(m), Some(dim)) => {
                    dump::load(&dump::ann_dir(self.path()), &m, dim).map(|index| (index, m))
                }
            };
            match loaded {
                Ok((index, m)) => {
                    catch_up(inner, &index, &name, m.catalog_version)?;
                    let slot = AnnSlot {
                        index: Arc::new(index),
                        generation: m.generation,
                        origin: AnnOrigin::Loaded,
                        reason: None,
                    };
                    inner.ann.write().insert(name.clone(), slot);
                    let ratio = inner.config.ann.rebuild_tombstone_ratio;
                    if self.ann_index(&name)?.needs_rebuild(ratio) {
                        let reason = "tombstones past the threshold after catching up".to_string();
                        rebuild_locked(
                            inner,
                            &name,
                            AnnOrigin::Rebuilt,
                            Some(reason),
                            &mut |_, _| {},
                        )?;
                    }
                }
                Err(reason) if dim.is_some() => {
                    rebuild_locked(
                        inner,
                        &name,
                        AnnOrigin::Rebuilt,
                        Some(reason),
                        &mut |_, _| {},
                    )?;
                }
                Err(_) => {}
            }
        }
        for name in &inner.config.ann_maintain {
            let known = inner.derived.read().dims.contains_key(name);
            if known && !inner.ann.read().contains_key(name) {
                rebuild_locked(inner, name, AnnOrigin::Built, None, &mut |_, _| {})?;
            }
        }
        Ok(())
    }
}

/// Builds the index of `vector` from the store, dumps it, switches the manifest and installs
/// it. The caller holds the writer lock, so the store does not change meanwhile.
fn rebuild_locked(
    inner: &Inner,
    vector: &str,
    origin: AnnOrigin,
    reason: Option<String>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<AnnInfo> {
    let store = &inner.store;
    let Some(dim) = inner.derived.read().dims.get(vector).copied() else {
        return Err(Error::UnknownVector {
            name: vector.to_string(),
        });
    };
    let version = super::stats::read_counts(store)?.catalog_version;
    let (ids, values) = scan_vectors(inner, vector, dim)?;
    let params = &inner.config.ann;
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        AnnIndex::build_flat(vector, dim, params, ids, values, version, progress)
    }));
    let index = built.map_err(|_| Error::Ann {
        vector: vector.to_string(),
        reason: "the graph build panicked".into(),
    })?;
    let key = keys::ann(vector);
    let previous = match store.get(TreeId::Meta, &key)? {
        Some(v) => AnnManifest::decode(&key, &v)
            .map(|m| m.generation)
            .unwrap_or(0),
        None => 0,
    };
    let generation = previous + 1;
    let dir = dump::ann_dir(&inner.config.path);
    let basename = dump::basename(vector, generation);
    let ann_err = |reason: String| Error::Ann {
        vector: vector.to_string(),
        reason,
    };
    let files = dump::write(&dir, &basename, &index).map_err(ann_err)?;
    let manifest = AnnManifest {
        vector: vector.to_string(),
        dim: dim as u32,
        generation,
        basename,
        catalog_version: version,
        max_nb_connection: index.max_nb_connection as u32,
        ef_construction: index.ef_construction as u32,
        points: index.counts().0 as u64,
        files,
    };
    store.transact(&[TreeId::Meta], |tx| {
        tx.insert(TreeId::Meta, &key, manifest.encode())?;
        Ok(())
    })?;
    store.db.flush()?;
    dump::remove_other_generations(&dir, vector, Some(generation));
    let slot = AnnSlot {
        index: Arc::new(index),
        generation,
        origin,
        reason,
    };
    let info = slot.info();
    inner.ann.write().insert(vector.to_string(), slot);
    Ok(info)
}

/// Every stored vector `name`: item ids, and their values one after the other (`dim` each).
/// Only live items hold vectors (F3).
fn scan_vectors(inner: &Inner, name: &str, dim: usize) -> Result<(Vec<u64>, Vec<f32>)> {
    let (mut ids, mut values) = (Vec::new(), Vec::new());
    for entry in inner.store.tree(TreeId::Vectors).iter() {
        let (k, v) = entry?;
        if k.len() != 8 + name.len() || &k[8..] != name.as_bytes() {
            continue;
        }
        ids.push(keys::parse_item_id("vectors", &k[..8])?);
        values.extend_from_slice(&records::decode_vector(&k, &v, dim)?);
    }
    Ok((ids, values))
}

/// Brings `index` (which reflects catalog version `since`) up to the store: every item written
/// after `since` is re-read and re-inserted or tombstoned. The caller holds the writer lock.
fn catch_up(inner: &Inner, index: &AnnIndex, name: &str, since: u64) -> Result<()> {
    let store = &inner.store;
    let version = super::stats::read_counts(store)?.catalog_version;
    if version > since {
        let dim = index.dim;
        for entry in store.tree(TreeId::Items).iter() {
            let (k, v) = entry?;
            let rec = ItemRecord::decode(&k, &v)?;
            if rec.updated_version <= since {
                continue;
            }
            let id = keys::parse_item_id("items", &k)?;
            let vkey = keys::vector(id, name);
            match store.get(TreeId::Vectors, &vkey)? {
                Some(bytes) if rec.live => {
                    index.upsert(id, &records::decode_vector(&vkey, &bytes, dim)?)
                }
                _ => index.remove(id),
            }
        }
    }
    index.set_catalog_version(version);
    Ok(())
}
