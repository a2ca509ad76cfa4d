//! How the node-local part stays the same on every cluster node: catalog changes go through
//! the cluster's catalog log (`src/cluster/catalog_log.rs`) and every node applies the log in
//! its order (state-machine replication; docs/cluster.md, "Nodes").
//!
//! A change made through a cluster node is validated as far as it can be without the node's
//! state, appended to the log, and then applied by catching up to it, so every node applies
//! every change in the same order, its own included; the caller gets the outcome of its own
//! entry. An entry that fails the same way everywhere (an insert of an existing key) is a
//! settled no-op. The id of the last applied entry is written in the same transaction as the
//! change for items and vectors, so a crash never applies one twice; tokenization imports and
//! model attaches are idempotent. The first node to apply an entry records its outcome (ids,
//! catalog version, tokenization fingerprint) in the cluster; a node whose outcome differs has
//! diverged (it started from another directory) and stops applying, with an error that says so.
//!
//! A running node picks up other nodes' changes within [`FOLLOW_EVERY`] (a background thread),
//! before each catalog change of its own, and when it opens.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{Db, Inner};
use crate::model::ModelOptions;
use crate::store::{keys, TreeId};
use crate::{Error, Item, Result};

/// How often a node applies the changes other nodes appended.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// One change of the node-local part, as the log stores it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Change {
    PutItems {
        items: Vec<Item>,
        insert_only: bool,
    },
    DeleteItems {
        keys: Vec<String>,
    },
    PutVectors {
        name: String,
        vectors: Vec<(String, Vec<f32>)>,
    },
    /// The tokenization file's text (docs/model-bundle.md or a LETTER index).
    Tokenization {
        source: String,
        text: String,
    },
    /// A bundle directory, by path: every node attaches it if the path holds that model on its
    /// host, else keeps its model (and serves lists of the new one as not current).
    Model {
        dir: PathBuf,
        model_id: String,
    },
}

/// What applying a change returned.
pub(super) enum Applied {
    Ids(Vec<u64>),
    Count(usize),
    Unit,
    Sid(crate::SidInfo),
    Model(crate::ModelInfo),
}

/// A node's catalog-log state.
#[derive(Default)]
pub(super) struct LogState {
    /// Serializes catching up (one applier at a time on a node).
    apply: Mutex<()>,
    /// Why this node stopped applying the log, once it diverged or failed.
    pub(super) halted: Mutex<Option<String>>,
    /// The options a model entry from another node is attached with (this node's last
    /// attach's, or the defaults).
    pub(super) model_options: Mutex<Option<ModelOptions>>,
}

impl Db {
    /// Applies every catalog change other cluster nodes appended since this node last did;
    /// returns how many it applied. A node does this on its own (on open, before each catalog
    /// change and every [`FOLLOW_EVERY`]); call it to be sure a change made through another node
    /// is here. Without a cluster there is no log: returns 0.
    pub fn sync_catalog(&self) -> Result<usize> {
        self.catch_up(None).map(|(n, _)| n)
    }

    /// Appends `change` to the log and applies the log up to it; the outcome of this entry.
    pub(super) fn through_log(&self, change: Change) -> Result<Applied> {
        let tier = self.cluster_tier()?;
        let body = serde_json::to_vec(&change)
            .map_err(|e| Error::InvalidArgument(format!("encoding a catalog change: {e}")))?;
        self.inner.poison.check()?;
        // One applier at a time, held from before the append until this node applied its own
        // entry (else the follower thread could apply it first).
        let _one = self.inner.catalog_log.apply.lock();
        // Catch up first, so a change refused by a halted node is not appended at all.
        self.catch_up_locked(tier, None)?;
        let id = tier.publish_change(&body)?;
        let (_, own) = self.catch_up_locked(tier, Some(&id))?;
        own.unwrap_or_else(|| {
            Err(Error::Cluster(format!(
                "catalog change {id} was appended but not found when applying the log"
            )))
        })
    }

    fn cluster_tier(&self) -> Result<&crate::cluster::ClusterTier> {
        self.inner
            .cluster
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("no cluster: no catalog log".into()))
    }

    /// Applies the log's entries after the last applied one.
    fn catch_up(&self, own: Option<&str>) -> Result<(usize, Option<Result<Applied>>)> {
        let Some(tier) = self.inner.cluster.as_ref() else {
            return Ok((0, None));
        };
        self.inner.poison.check()?;
        let _one = self.inner.catalog_log.apply.lock();
        self.catch_up_locked(tier, own)
    }

    /// [`Db::catch_up`] with the applier lock held; with `own`, returns that entry's outcome
    /// as well.
    fn catch_up_locked(
        &self,
        tier: &crate::cluster::ClusterTier,
        own: Option<&str>,
    ) -> Result<(usize, Option<Result<Applied>>)> {
        if let Some(why) = self.inner.catalog_log.halted.lock().clone() {
            return Err(Error::Cluster(why));
        }
        let mut applied = 0;
        let mut own_outcome = None;
        loop {
            let after = self.applied_change()?;
            let page = tier.changes_after(&after)?;
            if page.is_empty() {
                return Ok((applied, own_outcome));
            }
            for entry in page {
                let mine = own == Some(entry.id.as_str());
                let outcome = self.apply_entry(tier, &entry.id, &entry.body, mine)?;
                applied += 1;
                if mine {
                    own_outcome = Some(outcome);
                }
            }
        }
    }

    /// Applies one entry; `Err` only for a failure that must stop the log here (I/O, the
    /// cluster, a divergence); the change's own outcome is the inner result.
    fn apply_entry(
        &self,
        tier: &crate::cluster::ClusterTier,
        id: &str,
        body: &[u8],
        mine: bool,
    ) -> Result<Result<Applied>> {
        let change: Change = serde_json::from_slice(body).map_err(|e| {
            self.halt(format!(
                "catalog log entry {id} does not decode ({e}); a node of a newer version wrote \
                 it, or another program writes to this namespace's keys"
            ))
        })?;
        let outcome = match change {
            Change::PutItems { items, insert_only } => self
                .put_logged(&items, insert_only, Some(id))
                .map(Applied::Ids),
            Change::DeleteItems { keys } => {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                self.delete_logged(&keys, Some(id)).map(Applied::Count)
            }
            Change::PutVectors { name, vectors } => self
                .put_vectors_logged(&name, &vectors, Some(id))
                .map(|()| Applied::Unit),
            Change::Tokenization { source, text } => {
                let r = self.import_tokenization_text(Path::new(&source), &text);
                self.mark_applied(id)?;
                r.map(Applied::Sid)
            }
            Change::Model { dir, model_id } => {
                let r = self.apply_model_entry(&dir, &model_id, mine);
                self.mark_applied(id)?;
                // A model entry's outcome is the node's own (the path is per host).
                return Ok(r);
            }
        };
        if let Err(e) = &outcome {
            if transient(e) {
                return Err(retry_later(id, e));
            }
            if self.applied_change()? != id {
                // Items and vectors record the entry in their transaction; a refused one did
                // not commit, so record it here.
                self.mark_applied(id)?;
            }
        }
        let mine = self.outcome_of(&outcome)?;
        let first = tier.settle_outcome(id, &mine)?;
        if first != mine {
            return Err(self.halt(format!(
                "this node's catalog diverged from the cluster's at catalog log entry {id}: the \
                 first node to apply it got {first:?}, this one {mine:?}. The node was not \
                 started from a copy of a node's directory (docs/cluster.md, \"Nodes\"): \
                 replace its directory with a copy of a healthy node's"
            )));
        }
        Ok(outcome)
    }

    /// What applying an entry produced, comparable across nodes.
    fn outcome_of(&self, outcome: &Result<Applied>) -> Result<String> {
        let catalog = self.counts()?.catalog_version;
        Ok(match outcome {
            Ok(Applied::Ids(ids)) => format!("ok ids {ids:?} catalog {catalog}"),
            Ok(Applied::Count(n)) => format!("ok count {n} catalog {catalog}"),
            Ok(Applied::Unit) => format!("ok catalog {catalog}"),
            Ok(Applied::Sid(info)) => format!("ok sid {} catalog {catalog}", info.fingerprint),
            Ok(Applied::Model(_)) => "ok model".into(),
            Err(e) => format!("refused {} catalog {catalog}", error_kind(e)),
        })
    }

    /// The id of the last applied log entry (`"0-0"` for none).
    fn applied_change(&self) -> Result<String> {
        let meta = self.inner.store.tree(TreeId::Meta);
        Ok(match meta.get(keys::META_CATALOG_LOG)? {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None => "0-0".into(),
        })
    }

    fn mark_applied(&self, id: &str) -> Result<()> {
        self.write(&[TreeId::Meta], |tx, _| {
            tx.insert(TreeId::Meta, keys::META_CATALOG_LOG, id.as_bytes().to_vec())?;
            Ok(((), Default::default()))
        })
    }

    fn halt(&self, why: String) -> Error {
        *self.inner.catalog_log.halted.lock() = Some(why.clone());
        Error::Cluster(why)
    }

    /// Attaches the bundle of a model entry; another node's entry for the model this node
    /// already runs is a no-op (its own attach applies its new options).
    fn apply_model_entry(&self, dir: &Path, model_id: &str, mine: bool) -> Result<Applied> {
        if !mine {
            if let Some(m) = self.inner.model.read().as_ref() {
                if m.manifest.model_id == model_id {
                    return Ok(Applied::Model(m.info()));
                }
            }
        }
        let options = self
            .inner
            .catalog_log
            .model_options
            .lock()
            .clone()
            .unwrap_or_default();
        let info = self.attach_model_local(dir, options)?;
        if info.model_id != model_id {
            return Err(Error::InvalidBundle {
                path: dir.to_path_buf(),
                reason: format!(
                    "holds model {:?} on this host, not {model_id:?} as the node that attached \
                     it; this node now runs the bundle it found there",
                    info.model_id
                ),
            });
        }
        Ok(Applied::Model(info))
    }
}

/// A storage failure stops the log here; the next catch-up retries the same entry.
fn retry_later(id: &str, e: &Error) -> Error {
    Error::Cluster(format!(
        "applying catalog log entry {id} failed ({e}); it is retried on the next catch-up"
    ))
}

/// A failure of this node rather than of the change (retried, never settled).
fn transient(e: &Error) -> bool {
    matches!(
        e,
        Error::Storage(_) | Error::Io { .. } | Error::Poisoned(_) | Error::Corruption { .. }
    )
}

/// The variant name of an error: the same on every node for the same refusal (messages may
/// name node-local paths).
fn error_kind(e: &Error) -> String {
    let debug = format!("{e:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("")
        .to_string()
}

/// Starts the thread that applies other nodes' catalog changes (cluster nodes only).
pub(super) fn start(db: &Db) -> std::io::Result<()> {
    if db.inner.cluster.is_none() {
        return Ok(());
    }
    let weak: Weak<Inner> = Arc::downgrade(&db.inner);
    std::thread::Builder::new()
        .name("convergedb-catalog".into())
        .spawn(move || loop {
            std::thread::sleep(FOLLOW_EVERY);
            let Some(inner) = weak.upgrade() else { return };
            let db = Db { inner };
            // A failure is kept in `halted` (divergence) or retried next time; calls that
            // change the catalog report it.
            let _ = db.sync_catalog();
        })?;
    Ok(())
}
