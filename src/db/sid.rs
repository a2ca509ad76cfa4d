//! Tokenization on the `Db`: train or import a sid table, export it, read codes and the trie.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::catalog_log::{Applied, Change};
use super::items::unexpected;
use super::sid_assign::{add_to_tuple, assign_if_needed, Pending};
use super::Db;
use crate::derived::{Derived, Effects};
use crate::sid::{
    file, train, SidInfo, SidStats, SidTable, TokenizeOptions, Trie, MAX_CODES, MAX_LEVELS,
};
use crate::store::{keys, records, TreeId, Tx, TxResult};
use crate::{Error, Result};

/// Progress of [`Db::tokenize`]: one call per k-means iteration.
pub type TokenizeProgress<'a> = &'a (dyn Fn(train::TrainProgress) + Sync);

impl Db {
    /// Trains a new tokenization on the stored vector `opts.vector` of every live item (residual
    /// k-means, deterministic for a seed), assigns codes to all of them, and makes it the
    /// current sid table under a new version. Items put later get codes from these codebooks.
    ///
    /// Training runs without blocking other calls; items written meanwhile are assigned from the
    /// new codebooks when the table is installed.
    pub fn tokenize(
        &self,
        opts: &TokenizeOptions,
        progress: Option<TokenizeProgress<'_>>,
    ) -> Result<SidInfo> {
        self.inner.poison.check()?;
        if self.inner.cluster.is_some() {
            // Training is not replayed on other nodes (its result would have to be shipped).
            return Err(Error::InvalidArgument(
                "tokenize is not available on a cluster node: train the tokenization on a \
                 database without a cluster, export it (export_tokenization / `convergedb \
                 sid-export`) and import it through the cluster node, which every node applies"
                    .into(),
            ));
        }
        validate_shape(opts.levels, opts.codes)?;
        let dim = self
            .inner
            .derived
            .read()
            .dims
            .get(&opts.vector)
            .copied()
            .ok_or_else(|| {
                Error::InvalidTokenization(format!(
                    "no item holds a vector named {:?}",
                    opts.vector
                ))
            })?;
        let (keys_snapshot, data) = self.snapshot_vectors(&opts.vector, dim)?;
        if keys_snapshot.is_empty() {
            return Err(Error::InvalidTokenization(format!(
                "empty catalog: no live item holds vector {:?}",
                opts.vector
            )));
        }
        let params = train::TrainParams {
            levels: opts.levels,
            codes: opts.codes,
            iterations: opts.iterations,
            seed: opts.seed,
            balance_last_level: opts.balance_last_level,
            threads: opts.threads.max(1),
        };
        let silent = |_: train::TrainProgress| {};
        let (codebooks, codes) = train::train(
            &data,
            keys_snapshot.len(),
            dim,
            &params,
            progress.unwrap_or(&silent),
        )
        .map_err(|e| Error::InvalidTokenization(e.to_string()))?;
        let trained: HashMap<u64, Vec<u16>> = keys_snapshot
            .iter()
            .zip(codes.chunks_exact(opts.levels))
            .map(|(id, c)| (*id, c.to_vec()))
            .collect();
        let table = SidTable {
            version: 0,
            fingerprint: String::new(),
            levels: opts.levels,
            codes: opts.codes,
            vector: Some(opts.vector.clone()),
            codebooks: Some(codebooks),
            encoder: None,
            balance_last_level: opts.balance_last_level,
            source: format!(
                "trained: residual k-means on {:?}, {} items, seed {}, {} iterations{}",
                opts.vector,
                keys_snapshot.len(),
                opts.seed,
                opts.iterations,
                if opts.balance_last_level {
                    ", balanced last level"
                } else {
                    ""
                }
            ),
        };
        self.install_table(table, &trained)
    }

    /// Imports a tokenization file (`docs/model-bundle.md`) or a LETTER `*.index.json`: a new
    /// sid-table version whose item codes come from the file. Every key in the file must name a
    /// live item of this database. Live items the file does not cover get codes from the file's
    /// codebooks if it has some, else none. Importing the current table unchanged is a no-op.
    ///
    /// On a cluster node the file's text goes through the catalog log and every node imports it.
    pub fn import_tokenization(&self, path: &Path) -> Result<SidInfo> {
        self.inner.poison.check()?;
        let text = file::read_text(path)?;
        if self.inner.cluster.is_none() {
            return self.import_tokenization_text(path, &text);
        }
        // A file that does not parse is refused here, before it reaches the log.
        file::parse(path, &text)?;
        match self.through_log(Change::Tokenization {
            source: path.display().to_string(),
            text,
        })? {
            Applied::Sid(info) => Ok(info),
            _ => Err(unexpected()),
        }
    }

    /// Imports the text of a tokenization file into this node's store; `path` names it in
    /// errors.
    pub(super) fn import_tokenization_text(&self, path: &Path, text: &str) -> Result<SidInfo> {
        let parsed = file::parse(path, text)?;
        let mut by_id = HashMap::with_capacity(parsed.items.len());
        let mut unknown = Vec::new();
        for (key, codes) in &parsed.items {
            match self.item_id(key)? {
                Some(id) => {
                    by_id.insert(id, codes.clone());
                }
                None => unknown.push(key.as_str()),
            }
        }
        if !unknown.is_empty() {
            return Err(Error::InvalidTokenization(format!(
                "{}: {} of {} item keys are not live items of this database (first: {:?}); is the file from another catalog?",
                path.display(),
                unknown.len(),
                parsed.items.len(),
                unknown[0]
            )));
        }
        if let (Some(name), Some(dim)) = (&parsed.table.vector, parsed.table.input_dim()) {
            match self.inner.derived.read().dims.get(name) {
                Some(d) if *d == dim => {}
                Some(d) => {
                    return Err(Error::InvalidTokenization(format!(
                        "{}: the codebooks read vector {name:?} with dimension {dim}, but this database stores it with dimension {d}",
                        path.display()
                    )))
                }
                None => {
                    return Err(Error::InvalidTokenization(format!(
                        "{}: the codebooks read vector {name:?}, which no item of this database holds",
                        path.display()
                    )))
                }
            }
        }
        if let Some(current) = self.inner.derived.read().sid.as_deref() {
            let same = parsed
                .table
                .compute_fingerprint(parsed.items.iter().map(|(k, c)| (k.as_str(), c.as_slice())));
            if same == current.fingerprint {
                return Ok(SidInfo::of(current));
            }
        }
        self.install_table(parsed.table, &by_id)
    }

    /// Writes the current tokenization and every live item's codes to `path`.
    pub fn export_tokenization(&self, path: &Path) -> Result<SidInfo> {
        self.inner.poison.check()?;
        let (table, items) = {
            let _writer = self.inner.writer.lock(); // a consistent table + codes snapshot
            let derived = self.inner.derived.read();
            let table = derived.sid.clone().ok_or_else(no_table)?;
            let mut items = BTreeMap::new();
            for (codes, id) in derived.trie.pairs() {
                if let Some(meta) = derived.catalog.get(id) {
                    items.insert(meta.key.to_string(), codes);
                }
            }
            (table, items)
        };
        file::write(path, &table, items)?;
        Ok(SidInfo::of(&table))
    }

    /// The codes the current codebooks give `vector` by plain greedy residual assignment (no
    /// balancing, nothing stored); `None` without codebooks.
    pub fn quantize(&self, vector: &[f32]) -> Result<Option<Vec<u16>>> {
        let d = self.inner.derived.read();
        let (Some(table), Some(search)) = (d.sid.as_deref(), d.sid_search.as_deref()) else {
            return Ok(None);
        };
        let want = table.input_dim().unwrap_or(0);
        if vector.len() != want {
            return Err(Error::InvalidArgument(format!(
                "the vector has dimension {}, the tokenization reads dimension {want}",
                vector.len()
            )));
        }
        let mut codes = vec![0u16; table.levels];
        search
            .assign(&table.encode_input(vector), &mut codes)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        Ok(Some(codes))
    }

    /// The current tokenization, if any.
    pub fn sid_info(&self) -> Option<SidInfo> {
        self.inner.derived.read().sid.as_deref().map(SidInfo::of)
    }

    /// The codes of a live item (`None` if it has none or does not exist).
    pub fn sid(&self, key: &str) -> Result<Option<Vec<u16>>> {
        let Some(id) = self.item_id(key)? else {
            return Ok(None);
        };
        let k = keys::item_id(id);
        match self.inner.store.get(TreeId::Sids, &k)? {
            Some(v) => Ok(Some(records::decode_sid(&k, &v)?.1)),
            None => Ok(None),
        }
    }

    /// Codes that may follow `prefix` in a live semantic ID, ascending (empty when none may).
    pub fn allowed_next(&self, prefix: &[u16]) -> Vec<u16> {
        self.inner.derived.read().trie.allowed_next(prefix).to_vec()
    }

    /// The keys of the live items a full code tuple names, in ascending item id (oldest first):
    /// the documented order in which a generated tuple yields colliding items.
    pub fn items_for_sid(&self, codes: &[u16]) -> Vec<String> {
        let d = self.inner.derived.read();
        d.trie
            .items(codes)
            .iter()
            .filter_map(|id| d.catalog.get(*id).map(|m| m.key.to_string()))
            .collect()
    }

    /// Collision rate, codebook use and quantization error of the current tokenization.
    pub fn sid_stats(&self) -> Result<SidStats> {
        self.inner.poison.check()?;
        // Snapshot what is needed, then release the lock: the vector reads below may be many.
        let (table, pairs, coded, tuples, live, trie_bytes) = {
            let derived = self.inner.derived.read();
            let table = derived.sid.clone().ok_or_else(no_table)?;
            let live = derived.catalog.iter().filter(|(_, m)| m.live).count() as u64;
            let t = &derived.trie;
            (
                table,
                t.pairs(),
                t.item_count() as u64,
                t.tuple_count() as u64,
                live,
                t.heap_bytes() as u64,
            )
        };
        let mut per_tuple: BTreeMap<&[u16], u64> = BTreeMap::new();
        let mut used = vec![std::collections::HashSet::new(); table.levels];
        for (codes, _) in &pairs {
            *per_tuple.entry(codes.as_slice()).or_default() += 1;
            for (l, c) in codes.iter().enumerate() {
                used[l].insert(*c);
            }
        }
        debug_assert_eq!(per_tuple.len() as u64, tuples);
        let colliding: u64 = per_tuple.values().filter(|n| **n > 1).sum();
        let mean_relative_error = match (&table.codebooks, &table.vector) {
            (Some(cb), Some(name)) => {
                let dim = table.input_dim().unwrap_or(0);
                let mut sum = 0.0f64;
                let mut n = 0u64;
                let mut recon = vec![0f32; cb.dim];
                for (codes, id) in &pairs {
                    let vkey = keys::vector(*id, name);
                    let Some(bytes) = self.inner.store.get(TreeId::Vectors, &vkey)? else {
                        continue;
                    };
                    let x = table.encode_input(&records::decode_vector(&vkey, &bytes, dim)?);
                    train::reconstruct(cb, codes, &mut recon)
                        .map_err(|e| Error::InvalidTokenization(e.to_string()))?;
                    let norm = x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
                    let err = x
                        .iter()
                        .zip(&recon)
                        .map(|(a, b)| f64::from(a - b).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    if norm > 0.0 {
                        sum += err / norm;
                        n += 1;
                    }
                }
                (n > 0).then(|| sum / n as f64)
            }
            _ => None,
        };
        Ok(SidStats {
            info: SidInfo::of(&table),
            items_with_codes: coded,
            items_without_codes: live.saturating_sub(coded),
            distinct_tuples: tuples,
            collision_rate: if coded == 0 {
                0.0
            } else {
                colliding as f64 / coded as f64
            },
            max_items_per_tuple: per_tuple.values().copied().max().unwrap_or(0),
            codebook_use: used
                .iter()
                .map(|u| u.len() as f64 / table.codes as f64)
                .collect(),
            mean_relative_error,
            trie_bytes,
        })
    }

    /// (ids, row-major vectors) of the live items holding vector `name`, in id order.
    fn snapshot_vectors(&self, name: &str, dim: usize) -> Result<(Vec<u64>, Vec<f32>)> {
        let live: Vec<u64> = {
            let d = self.inner.derived.read();
            d.catalog
                .iter()
                .filter(|(_, m)| m.live)
                .map(|(id, _)| id)
                .collect()
        };
        let mut ids = Vec::new();
        let mut data = Vec::new();
        for id in live {
            let vkey = keys::vector(id, name);
            if let Some(bytes) = self.inner.store.get(TreeId::Vectors, &vkey)? {
                data.extend(records::decode_vector(&vkey, &bytes, dim)?);
                ids.push(id);
            }
        }
        Ok((ids, data))
    }

    /// Installs `table` as a new version: replaces every item's codes with `given` (item id ->
    /// codes), assigns codebook codes to live items not in `given`, in one transaction.
    fn install_table(&self, table: SidTable, given: &HashMap<u64, Vec<u16>>) -> Result<SidInfo> {
        table.validate()?;
        let store = &self.inner.store;
        // The keys to replace, read under the writer lock before the transaction.
        let old_keys = || -> Result<Vec<(TreeId, sled::IVec)>> {
            let mut out = Vec::new();
            for tree in [TreeId::Sids, TreeId::SidItems] {
                for k in store.tree(tree).iter().keys() {
                    out.push((tree, k?));
                }
            }
            Ok(out)
        };
        self.write_prepared(SID_TREES_AND_VECTORS, old_keys, |tx, derived, old_keys| {
            let mut t = table.clone();
            t.version = derived.sid.as_ref().map_or(1, |s| s.version + 1);
            for (tree, k) in old_keys {
                tx.remove(*tree, k)?;
            }
            let mut assigned: Vec<(u64, Vec<u16>)> = Vec::new();
            let mut uncovered = Vec::new();
            for (id, meta) in derived.catalog.iter() {
                if !meta.live {
                    continue;
                }
                match given.get(&id) {
                    Some(codes) => assigned.push((id, codes.clone())),
                    None => uncovered.push(id),
                }
            }
            let fingerprint_items: Vec<(String, Vec<u16>)> = assigned
                .iter()
                .filter_map(|(id, c)| {
                    derived
                        .catalog
                        .get(*id)
                        .map(|m| (m.key.to_string(), c.clone()))
                })
                .collect();
            t.fingerprint = t.compute_fingerprint(
                fingerprint_items
                    .iter()
                    .map(|(k, c)| (k.as_str(), c.as_slice())),
            );
            let table = Arc::new(t);
            let mut trie = Trie::new(table.levels);
            for (id, codes) in &assigned {
                tx.insert(
                    TreeId::Sids,
                    &keys::item_id(*id),
                    records::encode_sid(table.version, codes),
                )?;
                add_to_tuple(tx, codes, *id)?;
                trie.insert(codes, *id);
            }
            tx.insert(TreeId::Meta, keys::META_SID_TABLE, table.encode())?;
            // Items outside the table's content: codes from its codebooks, against the new trie.
            let staged = Derived {
                sid: Some(table.clone()),
                sid_search: crate::derived::prepare(&table)?,
                trie: std::sync::Arc::new(trie),
                ..Derived::default()
            };
            let mut pending = Pending::new();
            let mut effects = Effects::default();
            assign_uncovered(tx, &staged, &mut pending, &mut effects, &uncovered)?;
            let mut trie = std::sync::Arc::unwrap_or_clone(staged.trie);
            for (codes, id) in effects.trie_insert.drain(..) {
                trie.insert(&codes, id);
            }
            effects.new_sid = Some((table.clone(), staged.sid_search.clone(), trie));
            Ok((SidInfo::of(&table), effects))
        })
    }
}

const SID_TREES_AND_VECTORS: &[TreeId] = &[
    TreeId::Meta,
    TreeId::Sids,
    TreeId::SidItems,
    TreeId::Vectors,
];

fn assign_uncovered(
    tx: &Tx<'_>,
    staged: &Derived,
    pending: &mut Pending,
    effects: &mut Effects,
    uncovered: &[u64],
) -> TxResult<()> {
    let Some(table) = staged.sid.as_deref() else {
        return Ok(());
    };
    let (Some(name), Some(dim)) = (&table.vector, table.input_dim()) else {
        return Ok(());
    };
    for id in uncovered {
        let vkey = keys::vector(*id, name);
        if let Some(bytes) = tx.get(TreeId::Vectors, &vkey)? {
            let x = records::decode_vector(&vkey, &bytes, dim)?;
            assign_if_needed(tx, staged, pending, effects, *id, Some(&x))?;
        }
    }
    Ok(())
}

fn no_table() -> Error {
    Error::InvalidTokenization(
        "the database has no tokenization yet: run tokenize or import one".into(),
    )
}

fn validate_shape(levels: usize, codes: usize) -> Result<()> {
    if levels == 0 || levels > MAX_LEVELS {
        return Err(Error::InvalidTokenization(format!(
            "levels = {levels} must be between 1 and {MAX_LEVELS}"
        )));
    }
    if !(2..=MAX_CODES).contains(&codes) {
        return Err(Error::InvalidTokenization(format!(
            "codes = {codes} must be between 2 and {MAX_CODES} (codes are stored as u16)"
        )));
    }
    Ok(())
}
