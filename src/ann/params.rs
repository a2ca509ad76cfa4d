//! HNSW and maintenance parameters of the ANN layer, with their validation.

use crate::{Error, Result};

/// Most links per node and layer. More only cost memory and time (12 to 48 is usual); dumps
/// with a larger M are refused as damaged.
pub(crate) const MAX_NB_CONNECTION: usize = 256;

/// Parameters of every ANN index of a database (set with the `Config::ann_*` builders).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AnnParams {
    /// M: links per point on the upper layers (layer 0 keeps 2·M), 2..=256. Default 16.
    pub max_nb_connection: usize,
    /// Candidates examined when inserting a point. Default 200.
    pub ef_construction: usize,
    /// Candidates examined per query (raised to `k` when `k` is larger). Default 96.
    pub ef_search: usize,
    /// Rebuild an index once tombstones exceed this fraction of its points. Default 0.25.
    pub rebuild_tombstone_ratio: f64,
    /// Fewest history entries a user needs before `recommend` uses the ANN index. Default 1.
    pub min_history: usize,
    /// Most recent history entries averaged into the query vector. Default 20.
    pub recent_items: usize,
}

impl Default for AnnParams {
    fn default() -> Self {
        AnnParams {
            max_nb_connection: 16,
            ef_construction: 200,
            ef_search: 128,
            rebuild_tombstone_ratio: 0.25,
            min_history: 1,
            recent_items: 20,
        }
    }
}

impl AnnParams {
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if !(2..=MAX_NB_CONNECTION).contains(&self.max_nb_connection) {
            return bad(format!(
                "ann max_nb_connection (M) = {} is out of range: use 2..={MAX_NB_CONNECTION} \
                 (more links per layer only cost memory; 12 to 48 is usual)",
                self.max_nb_connection
            ));
        }
        if self.ef_construction == 0 || self.ef_construction > 10_000 {
            return bad(format!(
                "ann ef_construction = {} is out of range: use 1..=10000 (100 to 400 is usual)",
                self.ef_construction
            ));
        }
        if self.ef_search == 0 || self.ef_search > 100_000 {
            return bad(format!(
                "ann ef_search = {} is out of range: use 1..=100000",
                self.ef_search
            ));
        }
        if !(self.rebuild_tombstone_ratio > 0.0 && self.rebuild_tombstone_ratio <= 1.0) {
            return bad(format!(
                "ann rebuild_tombstone_ratio = {} is out of range: use a fraction in (0, 1]",
                self.rebuild_tombstone_ratio
            ));
        }
        if self.min_history == 0 {
            return bad("ann min_history must be at least 1".to_string());
        }
        if self.recent_items == 0 || self.recent_items > 10_000 {
            return bad(format!(
                "ann recent_items = {} is out of range: use 1..=10000",
                self.recent_items
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_links_is_refused() {
        let p = AnnParams {
            max_nb_connection: 257,
            ..AnnParams::default()
        };
        let err = p.validate().unwrap_err().to_string();
        assert!(err.contains("max_nb_connection"), "{err}");
        assert!(AnnParams::default().validate().is_ok());
    }
}
