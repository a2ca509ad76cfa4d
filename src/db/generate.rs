//! Generation with the attached model: `attach_model`, `generate`, `generate_batch`,
//! `generate_for_history`.
//!
//! A request reads the user's history (one sled get) and the codes of its items (`sids`), takes
//! a snapshot of the live-ID trie (an `Arc`, so writers are never blocked by inference), renders
//! and tokenizes the prompt and runs the constrained beam search on a pooled session.

use std::path::Path;
use std::sync::Arc;

use super::catalog_log::{Applied, Change};
use super::items::unexpected;
use super::validate::{validate_k, validate_key};
use super::Db;
use crate::derived::Effects;
use crate::model::beam::{Answer, Request};
use crate::model::{Model, ModelInfo, ModelOptions};
use crate::sid::Trie;
use crate::store::records;
use crate::store::{keys, TreeId};
use crate::{Error, ListStamps, Recommendation, Result, ScoredItem, Source};

/// A rendered prompt (docs/model-bundle.md, "Prompt rendering").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    /// The prompt text (the template with the history's ID tokens).
    pub text: String,
    /// `[bos] ++` its token ids: what the model is fed.
    pub input_ids: Vec<i64>,
}

/// One user's generation input.
#[derive(Clone)]
pub(super) struct Prepared {
    user: String,
    pub(super) history_version: u64,
    prompt: Vec<i64>,
    /// History item ids, sorted (for exclusion).
    pub(super) exclude: Vec<u64>,
    /// History item ids, oldest first (the re-rank's user vector).
    pub(super) history: Vec<u64>,
}

impl Db {
    /// Loads and validates the model bundle in `dir` and attaches it, replacing any attached
    /// model. The bundle must have been trained on this database's current tokenization (its
    /// `sid.fingerprint`), else [`Error::ForeignTokenization`].
    ///
    /// On a cluster node the attach goes through the catalog log: every node attaches the bundle
    /// at the same path if that path holds the same model on its host (docs/cluster.md,
    /// "Nodes"), with the options of its own last attach.
    pub fn attach_model(&self, dir: impl AsRef<Path>, options: ModelOptions) -> Result<ModelInfo> {
        self.inner.poison.check()?;
        let dir = dir.as_ref();
        if self.inner.cluster.is_none() {
            return self.attach_model_local(dir, options);
        }
        // Refused bundles never reach the log; the other nodes get an absolute path.
        let info = Model::load(dir, options.clone())?.info();
        let dir = std::fs::canonicalize(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        *self.inner.catalog_log.model_options.lock() = Some(options);
        match self.through_log(Change::Model {
            dir,
            model_id: info.model_id,
        })? {
            Applied::Model(info) => Ok(info),
            _ => Err(unexpected()),
        }
    }

    /// Attaches the bundle in `dir` to this node.
    pub(super) fn attach_model_local(
        &self,
        dir: &Path,
        options: ModelOptions,
    ) -> Result<ModelInfo> {
        let model = Model::load(dir, options)?;
        self.check_fingerprint(&model, dir)?;
        self.check_rerank_vectors(&model)?;
        let info = model.info();
        self.install_model(model)?;
        Ok(info)
    }

    /// Makes `model` the attached one and records its id as current (the model swap).
    fn install_model(&self, model: Model) -> Result<()> {
        let id = model.manifest.model_id.clone();
        *self.inner.model.write() = Some(Arc::new(model));
        // Model swap: the id of the lists that are current changes; every other list becomes
        // stale (served, flagged, while the sweep queues it for a progressive refresh).
        self.write(&[TreeId::Meta], |tx, derived| {
            let mut effects = Effects::default();
            if derived.model_id.as_deref() != Some(id.as_str()) {
                tx.insert(
                    TreeId::Meta,
                    keys::META_MODEL,
                    records::encode_model_id(&id),
                )?;
                effects.model_id = Some(Arc::from(id.as_str()));
            }
            Ok(((), effects))
        })?;
        self.inner.refresh.request_sweep();
        Ok(())
    }

    /// Fault-free test double for the fuzz harness: attaches a deterministic generator (real
    /// beam search over the real trie, hashed logits) under `model_id`, fitting any
    /// tokenization. Not a stable API.
    #[cfg(feature = "fuzzing")]
    #[doc(hidden)]
    pub fn attach_test_generator(&self, model_id: &str) -> Result<()> {
        self.inner.poison.check()?;
        self.install_model(Model::fake(model_id)?)
    }

    /// Detaches the model (generation then fails with [`Error::NoModel`]).
    pub fn detach_model(&self) {
        *self.inner.model.write() = None;
    }

    /// The attached model, if any.
    pub fn model_info(&self) -> Option<ModelInfo> {
        self.inner.model.read().as_ref().map(|m| m.info())
    }

    fn check_fingerprint(&self, model: &Model, dir: &Path) -> Result<()> {
        let current = self
            .inner
            .derived
            .read()
            .sid
            .as_ref()
            .map(|t| t.fingerprint.clone());
        match current {
            fp if model.fits(fp.as_deref()) => Ok(()),
            other => Err(Error::ForeignTokenization {
                path: dir.to_path_buf(),
                bundle: model.fingerprint().to_string(),
                database: other.unwrap_or_else(|| "none".into()),
            }),
        }
    }

    pub(super) fn attached(&self) -> Result<Arc<Model>> {
        let model = self.inner.model.read().clone().ok_or(Error::NoModel)?;
        self.check_fingerprint(&model, &model.dir)?;
        Ok(model)
    }

    /// Up to `k` items for `user` generated by the attached model, best first, excluding the
    /// user's history. Synchronous (runs the model now); the cached path is `recommend`.
    pub fn generate(&self, user: &str, k: usize) -> Result<Recommendation> {
        let mut out = self.generate_batch(&[user], k)?;
        out.pop()
            .ok_or_else(|| Error::Inference("no answer for the request".into()))
    }

    /// [`Db::generate`] for many users at once, batched through the model (the refresh
    /// workers' entry point). Answers are in the order of `users`.
    pub fn generate_batch(&self, users: &[&str], k: usize) -> Result<Vec<Recommendation>> {
        let limits = &self.inner.config.limits;
        validate_k(k, limits)?;
        for u in users {
            validate_key("user", u, limits)?;
        }
        self.inner.poison.check()?;
        let model = self.attached()?;
        let sid_version = self.inner.derived.read().sid_version().unwrap_or(0);
        let mut prepared = Vec::with_capacity(users.len());
        for &user in users {
            prepared.push(self.prepare_user(&model, user)?);
        }
        let answers = self.run_model(&model, &prepared, k)?;
        Ok(prepared
            .into_iter()
            .zip(answers)
            .map(|(p, a)| Recommendation {
                user: p.user,
                source: Source::Model,
                history_version: p.history_version,
                stale: false,
                stamps: Some(ListStamps {
                    model_id: model.manifest.model_id.clone(),
                    sid_version,
                    computed_at_ms: super::refresh::now_ms(),
                }),
                items: self.name_items(&a),
            })
            .collect())
    }

    /// Generates for an explicit history (item keys, oldest first) instead of a stored user:
    /// what the model would answer after this history. At most the model's `max_history` items
    /// ([`Error::HistoryTooLong`]); every key must name a live item.
    pub fn generate_for_history(
        &self,
        history: &[&str],
        k: usize,
        exclude_history: bool,
    ) -> Result<Vec<ScoredItem>> {
        validate_k(k, &self.inner.config.limits)?;
        self.inner.poison.check()?;
        let model = self.attached()?;
        let ids = self.resolve_history(&model, history)?;
        let prompt = self.render(&model, &ids)?.input_ids;
        let mut exclude = if exclude_history {
            ids.clone()
        } else {
            Vec::new()
        };
        exclude.sort_unstable();
        exclude.dedup();
        let p = Prepared {
            user: String::new(),
            history_version: 0,
            prompt,
            exclude,
            history: ids,
        };
        let answers = self.run_model(&model, std::slice::from_ref(&p), k)?;
        Ok(answers
            .first()
            .map(|a| self.name_items(a))
            .unwrap_or_default())
    }

    /// The prompt the model sees for `user`: its text and token ids (for tools and tests).
    pub fn prompt(&self, user: &str) -> Result<Prompt> {
        validate_key("user", user, &self.inner.config.limits)?;
        let model = self.attached()?;
        let ids = self.history_ids(user)?.1;
        self.render(&model, &ids)
    }

    /// The prompt the model sees after an explicit history (item keys, oldest first).
    pub fn prompt_for_history(&self, history: &[&str]) -> Result<Prompt> {
        let model = self.attached()?;
        let ids = self.resolve_history(&model, history)?;
        self.render(&model, &ids)
    }

    fn render(&self, model: &Model, ids: &[u64]) -> Result<Prompt> {
        let codes = self.recent_codes(ids, model.max_history())?;
        let (text, input_ids) = model.prompt(&codes)?;
        Ok(Prompt { text, input_ids })
    }

    /// Item ids of an explicit history, checked against the model's maximum.
    fn resolve_history(&self, model: &Model, history: &[&str]) -> Result<Vec<u64>> {
        let limits = &self.inner.config.limits;
        if history.len() > model.max_history() {
            return Err(Error::HistoryTooLong {
                len: history.len(),
                max: model.max_history(),
            });
        }
        let mut ids = Vec::with_capacity(history.len());
        for key in history {
            validate_key("item", key, limits)?;
            match self.item_id(key)? {
                Some(id) => ids.push(id),
                None => {
                    return Err(Error::UnknownItem {
                        key: key.to_string(),
                    })
                }
            }
        }
        Ok(ids)
    }

    fn history_ids(&self, user: &str) -> Result<(u64, Vec<u64>)> {
        Ok(self.load_history_ids(user)?.unwrap_or_default())
    }

    /// Codes of the last `max` items of `ids` that have codes, oldest first. Reads from the
    /// newest backwards, so a long history costs `max` lookups, not one per entry.
    fn recent_codes(&self, ids: &[u64], max: usize) -> Result<Vec<Vec<u16>>> {
        let mut out = Vec::with_capacity(max.min(ids.len()));
        for &id in ids.iter().rev() {
            if out.len() == max {
                break;
            }
            let key = keys::item_id(id);
            if let Some(bytes) = self.inner.store.get(TreeId::Sids, &key)? {
                out.push(records::decode_sid(&key, &bytes)?.1);
            }
        }
        out.reverse();
        Ok(out)
    }

    pub(super) fn prepare_user(&self, model: &Model, user: &str) -> Result<Prepared> {
        let (history_version, ids) = self.history_ids(user)?;
        self.prepare_ids(model, user, history_version, ids)
    }

    /// A prompt and exclusion set from history item ids, oldest first (the cluster tier's
    /// histories come from there, not from the local store).
    pub(super) fn prepare_ids(
        &self,
        model: &Model,
        user: &str,
        history_version: u64,
        ids: Vec<u64>,
    ) -> Result<Prepared> {
        let prompt = self.render(model, &ids)?.input_ids;
        let mut exclude = ids.clone();
        exclude.sort_unstable();
        exclude.dedup();
        Ok(Prepared {
            user: user.to_string(),
            history_version,
            prompt,
            exclude,
            history: ids,
        })
    }

    pub(super) fn run_model(
        &self,
        model: &Model,
        prepared: &[Prepared],
        k: usize,
    ) -> Result<Vec<Answer>> {
        let (trie, codes): (Arc<Trie>, usize) = {
            let d = self.inner.derived.read();
            (d.trie.clone(), d.sid.as_ref().map_or(0, |t| t.codes))
        };
        // With a re-rank, the beam gives its first `candidates` items and the re-rank keeps k.
        let n = model.rerank().map_or(k, |(r, _)| k.max(r.candidates));
        let requests: Vec<Request<'_>> = prepared
            .iter()
            .map(|p| Request {
                prompt: p.prompt.clone(),
                exclude: &p.exclude,
                k: n,
            })
            .collect();
        let mut answers = model.generate(&trie, codes, &requests)?;
        self.rerank(model, prepared, &mut answers, k)?;
        Ok(answers)
    }

    fn name_items(&self, answer: &Answer) -> Vec<ScoredItem> {
        self.name_live(answer.items.iter().copied())
    }

    /// (id, score) pairs as named items, dropping items that are not live: the trie snapshot
    /// (or a stored list) may name an item deleted since; it is never returned.
    pub(super) fn name_live(&self, items: impl Iterator<Item = (u64, f64)>) -> Vec<ScoredItem> {
        let derived = self.inner.derived.read();
        items
            .filter_map(|(id, score)| {
                derived
                    .catalog
                    .get(id)
                    .filter(|m| m.live)
                    .map(|meta| ScoredItem {
                        key: meta.key.to_string(),
                        item_id: id,
                        score,
                    })
            })
            .collect()
    }
}
