//! `embed_interactions`: behavioural item vectors sketched from the stored histories.

use super::Db;
use crate::sid::embed::{add_scaled, gaussian, normalize};
use crate::store::records::StoredHistory;
use crate::store::TreeId;
use crate::{Error, Result};

/// Items per `put_vectors` batch.
const BATCH: usize = 50_000;

impl Db {
    /// Computes a behavioural vector of dimension `dim` for every live item from the
    /// interaction histories (see `crate::sid::embed`: a random-projection sketch of the
    /// item-user matrix, deterministic for a seed) and stores it as vector `name`. Returns the
    /// number of items written.
    pub fn embed_interactions(&self, name: &str, dim: usize, seed: u64) -> Result<u64> {
        self.inner.poison.check()?;
        if self.cluster().is_some() {
            return Err(super::interactions::unsupported_on_cluster(
                "embed_interactions",
            ));
        }
        let max = self.limits().max_vector_dim;
        if dim == 0 || dim > max {
            return Err(Error::InvalidArgument(format!(
                "dim = {dim} must be between 1 and {max}"
            )));
        }
        let slots = self.inner.derived.read().catalog.len() as usize + 1;
        let mut acc = vec![Vec::<f32>::new(); slots];
        for entry in self.inner.store.tree(TreeId::Histories).iter() {
            let (user, bytes) = entry?;
            let history = StoredHistory::from_head(&self.inner.store, &user, bytes)?;
            if history.len() == 0 {
                continue;
            }
            let g = gaussian(&String::from_utf8_lossy(&user), seed, dim);
            let scale = 1.0 / (history.len() as f32).sqrt();
            for id in history.item_ids() {
                let id = id as usize;
                if let Some(slot) = acc.get_mut(id) {
                    if slot.is_empty() {
                        *slot = vec![0.0; dim];
                    }
                    add_scaled(slot, &g, scale);
                }
            }
        }
        let live: Vec<(u64, String)> = {
            let d = self.inner.derived.read();
            d.catalog
                .iter()
                .filter(|(_, m)| m.live)
                .map(|(id, m)| (id, m.key.to_string()))
                .collect()
        };
        let mut vectors = Vec::with_capacity(live.len());
        for (id, key) in live {
            let mut v = std::mem::take(&mut acc[id as usize]);
            if v.is_empty() || !normalize(&mut v) {
                v = gaussian(&key, seed, dim);
                normalize(&mut v);
            }
            vectors.push((key, v));
        }
        for chunk in vectors.chunks(BATCH) {
            self.put_vectors(name, chunk)?;
        }
        Ok(vectors.len() as u64)
    }
}
