//! Update triggers, the cached lists and their refresh: `refresh`, `refresh_now`, `wait_idle`,
//! the workers' batch (`refresh_batch`) with its compare-and-swap write, and the sweep that finds
//! lists which are no longer current.
//!
//! Invariants owned here (architecture §4): 4 — a list whose history stamp is older than the
//! user's history has the user in `stale` (the history write queues it in the same
//! transaction; only the CAS below removes the record); 5 — a list is written only if the
//! user's history version, the current model id and the tokenization version are still the
//! ones it was computed from, all checked under the writer lock inside one transaction.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::validate::validate_key;
use super::Db;
use crate::derived::Effects;
use crate::refresh::Outcome;
use crate::store::records::HistoryView;
use crate::store::{keys, Reason, StaleRecord, TopkRecord, TopkView, TreeId};
use crate::{Error, ListStamps, Recommendation, Result, Source};

/// Users per write transaction when queueing many at once.
const ENQUEUE_CHUNK: usize = 1024;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A list computed for one dispatched user.
struct Computed {
    user: Arc<str>,
    seq: u64,
    record: TopkRecord,
}

impl Db {
    /// Queues `users` for a refresh of their cached lists (durably: the queue survives a
    /// crash). Unknown users are an error ([`Error::UnknownUser`]); nothing is queued then.
    pub fn refresh(&self, users: &[&str]) -> Result<()> {
        let limits = &self.inner.config.limits;
        super::validate::validate_batch_len(users.len(), limits)?;
        for u in users {
            validate_key("user", u, limits)?;
        }
        if let Some(tier) = self.cluster() {
            // Each user's marker is set on its own (users live in different slots): users
            // before an unknown one stay queued, which costs one refresh each.
            for u in users {
                if !tier.request_refresh(u, false)? {
                    return Err(Error::UnknownUser { key: u.to_string() });
                }
            }
            return Ok(());
        }
        for chunk in users.chunks(ENQUEUE_CHUNK) {
            let base = self.inner.refresh.queue.reserve_seqs(chunk.len());
            self.write(&[TreeId::Histories, TreeId::Stale], |tx, _| {
                let mut effects = Effects::default();
                for (i, user) in chunk.iter().enumerate() {
                    let Some(h) = tx.get(TreeId::Histories, user.as_bytes())? else {
                        return Err(Error::UnknownUser {
                            key: user.to_string(),
                        }
                        .into());
                    };
                    let version = HistoryView::parse(user.as_bytes(), &h)?.version();
                    let seq = base + i as u64;
                    let rec = StaleRecord {
                        seq,
                        history_version: version,
                        enqueued_at_ms: now_ms(),
                        reason: Reason::Manual,
                    };
                    tx.insert(TreeId::Stale, user.as_bytes(), rec.encode())?;
                    effects.queued.push((Arc::from(*user), seq));
                }
                Ok(((), effects))
            })?;
        }
        Ok(())
    }

    /// Regenerates `user`'s cached list now, on this thread, with the attached model, and
    /// returns it. Retries when the history changes meanwhile (invariant 5), at most 3 times
    /// ([`Error::Conflict`] after that).
    pub fn refresh_now(&self, user: &str) -> Result<Recommendation> {
        validate_key("user", user, &self.inner.config.limits)?;
        self.inner.poison.check()?;
        if let Some(tier) = self.cluster() {
            return self.refresh_now_cluster(tier, user);
        }
        if self
            .inner
            .store
            .get(TreeId::Histories, user.as_bytes())?
            .is_none()
        {
            return Err(Error::UnknownUser {
                key: user.to_string(),
            });
        }
        let user: Arc<str> = Arc::from(user);
        for _ in 0..3 {
            let seq = self.inner.refresh.queue.durable_seq(&user).unwrap_or(0);
            let mut out = self.refresh_users(&[(Arc::clone(&user), seq)]);
            let Some((outcome, record)) = out.pop() else {
                break;
            };
            match (outcome, record) {
                (Outcome::Written, Some(rec)) => {
                    self.inner.refresh.queue.forget(&user, seq);
                    return Ok(self.list_answer(&user, &rec));
                }
                (Outcome::Conflict, _) => continue,
                (Outcome::NoModel, _) => {
                    return Err(self.attached().err().unwrap_or(Error::NoModel));
                }
                (Outcome::Failed(e), _) => return Err(Error::Inference(e)),
                (Outcome::Written, None) => break,
            }
        }
        Err(Error::Conflict(format!(
            "the history of {user:?} kept changing while its list was computed"
        )))
    }

    /// Blocks until no user is queued or being refreshed (users whose refresh failed
    /// repeatedly are parked and do not count: see `stats().refresh`). With
    /// `Config::refresh_workers(0)` the queue is drained on this thread. Fails when users are
    /// queued but no usable model is attached (nothing could refresh them).
    pub fn wait_idle(&self) -> Result<()> {
        self.wait_idle_timeout(Duration::MAX).map(|_| ())
    }

    /// [`Db::wait_idle`] for at most `timeout`: `Ok(true)` when idle, `Ok(false)` on timeout.
    pub fn wait_idle_timeout(&self, timeout: Duration) -> Result<bool> {
        if let Some(tier) = self.cluster() {
            return self.wait_idle_cluster(tier, timeout);
        }
        let started = Instant::now();
        let refresh = &self.inner.refresh;
        loop {
            self.inner.poison.check()?;
            let sweeping = refresh.sweep_pending();
            if !sweeping && refresh.queue.is_idle() {
                return Ok(true);
            }
            if started.elapsed() >= timeout {
                return Ok(false);
            }
            if refresh.has_threads() {
                if !refresh.queue.is_idle() && !sweeping {
                    self.attached()?;
                }
                let left = timeout.saturating_sub(started.elapsed());
                refresh.queue.wait(left.min(Duration::from_millis(50)), || {
                    !refresh.sweep_pending() && refresh.queue.is_idle()
                });
            } else if sweeping {
                let covered = refresh.sweep_started();
                self.sweep()?;
                refresh.sweep_finished(covered);
            } else {
                self.attached()?;
                let batch = refresh.queue.take_batch(refresh.params.max_batch);
                if batch.is_empty() {
                    // Only users waiting out a retry delay are left.
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                self.run_refresh_batch(&batch);
            }
        }
    }

    /// The workers' job: refresh `batch`, catching a panic, and report to the queue. After a
    /// panic the batch's users are retried one by one, so one bad user does not fail the rest.
    pub(crate) fn run_refresh_batch(&self, batch: &[(Arc<str>, u64)]) {
        let refresh = &self.inner.refresh;
        refresh.counters.batch(batch.len());
        let outcomes = match self.refresh_catching(batch) {
            Ok(o) => o,
            Err(_) if batch.len() > 1 => batch
                .iter()
                .flat_map(|one| {
                    self.refresh_catching(std::slice::from_ref(one))
                        .unwrap_or_else(|failed| failed)
                })
                .collect(),
            Err(failed) => failed,
        };
        for ((user, _), outcome) in batch.iter().zip(&outcomes) {
            refresh
                .queue
                .finish(user, outcome, |lag| refresh.counters.outcome(outcome, lag));
        }
    }

    /// `refresh_users` with its panic caught: `Err` holds one `Failed` per user.
    fn refresh_catching(
        &self,
        batch: &[(Arc<str>, u64)],
    ) -> std::result::Result<Vec<Outcome>, Vec<Outcome>> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.refresh_users(batch))) {
            Ok(o) => Ok(o.into_iter().map(|(o, _)| o).collect()),
            Err(panic) => {
                let msg = panic_message(panic.as_ref());
                self.inner.refresh.counters.panic(msg.clone());
                Err(vec![
                    Outcome::Failed(format!(
                        "refresh worker panicked: {msg}"
                    ));
                    batch.len()
                ])
            }
        }
    }

    /// Generates and writes the lists of `batch` ((user, seq of its durable record)).
    fn refresh_users(&self, batch: &[(Arc<str>, u64)]) -> Vec<(Outcome, Option<TopkRecord>)> {
        #[cfg(feature = "fuzzing")]
        if let Some(victim) = self.inner.refresh.panic_on.lock().as_deref() {
            if batch.iter().any(|(u, _)| &**u == victim) {
                panic!("injected fault: refreshing user {victim:?}");
            }
        }
        let Ok(model) = self.attached() else {
            return batch.iter().map(|_| (Outcome::NoModel, None)).collect();
        };
        let k = self.inner.refresh.params.cache_k;
        // Stamp before the trie snapshot is taken: a tokenization change in between makes the
        // CAS refuse the list rather than stamp it with a version it was not computed under.
        let sid_version = self.inner.derived.read().sid_version().unwrap_or(0);
        let mut out: Vec<(Outcome, Option<TopkRecord>)> =
            batch.iter().map(|_| (Outcome::NoModel, None)).collect();
        let mut prepared = Vec::with_capacity(batch.len());
        let mut slots = Vec::with_capacity(batch.len());
        for (i, (user, _)) in batch.iter().enumerate() {
            match self.prepare_user(&model, user) {
                Ok(p) => {
                    prepared.push(p);
                    slots.push(i);
                }
                Err(e) => out[i].0 = Outcome::Failed(e.to_string()),
            }
        }
        let answers = match self.run_model(&model, &prepared, k) {
            Ok(a) => a.into_iter().map(Ok).collect::<Vec<_>>(),
            // Isolate the user that fails from the others.
            Err(_) if prepared.len() > 1 => prepared
                .iter()
                .map(|p| {
                    self.run_model(&model, std::slice::from_ref(p), k)
                        .and_then(|mut a| a.pop().ok_or(Error::Inference("no answer".into())))
                })
                .collect(),
            Err(e) => vec![Err(e)],
        };
        let computed_at_ms = now_ms();
        let model_id = model.manifest.model_id.clone();
        let mut computed = Vec::with_capacity(prepared.len());
        let mut computed_slots = Vec::with_capacity(prepared.len());
        for ((p, answer), &slot) in prepared.iter().zip(answers).zip(&slots) {
            match answer {
                Ok(a) => {
                    computed.push(Computed {
                        user: Arc::clone(&batch[slot].0),
                        seq: batch[slot].1,
                        record: TopkRecord {
                            history_version: p.history_version,
                            sid_version,
                            computed_at_ms,
                            model_id: model_id.clone(),
                            items: a.items.iter().map(|&(id, s)| (id, s as f32)).collect(),
                        },
                    });
                    computed_slots.push(slot);
                }
                Err(e) => out[slot].0 = Outcome::Failed(e.to_string()),
            }
        }
        match self.write_lists(&computed) {
            Ok(written) => {
                for (slot, ok) in computed_slots.into_iter().zip(written) {
                    out[slot] = match ok {
                        Some(rec) => (Outcome::Written, Some(rec)),
                        None => (Outcome::Conflict, None),
                    };
                }
            }
            Err(e) => {
                for slot in computed_slots {
                    out[slot].0 = Outcome::Failed(e.to_string());
                }
            }
        }
        out
    }

    /// The compare-and-swap write (invariant 5): each list is written only if the user's
    /// history version, the model id and the tokenization version are still those it was
    /// computed from; items deleted meanwhile are dropped; the user's `stale` record is
    /// removed only if it is still the one the worker was dispatched for. Returns the record
    /// written per list, `None` where the list was refused.
    fn write_lists(&self, lists: &[Computed]) -> Result<Vec<Option<TopkRecord>>> {
        if lists.is_empty() {
            return Ok(Vec::new());
        }
        self.write(
            &[TreeId::Histories, TreeId::Topk, TreeId::Stale],
            |tx, derived| {
                let mut written = Vec::with_capacity(lists.len());
                let model = derived.model_id.as_deref();
                let sid = derived.sid_version();
                for c in lists {
                    let key = c.user.as_bytes();
                    let version = match tx.get(TreeId::Histories, key)? {
                        Some(b) => HistoryView::parse(key, &b)?.version(),
                        None => 0,
                    };
                    let r = &c.record;
                    if version != r.history_version
                        || model != Some(r.model_id.as_str())
                        || sid != Some(r.sid_version)
                    {
                        written.push(None);
                        continue;
                    }
                    let mut rec = r.clone();
                    rec.items
                        .retain(|(id, _)| derived.catalog.get(*id).is_some_and(|m| m.live));
                    tx.insert(TreeId::Topk, key, rec.encode())?;
                    if let Some(b) = tx.get(TreeId::Stale, key)? {
                        if StaleRecord::decode(key, &b)?.seq == c.seq {
                            tx.remove(TreeId::Stale, key)?;
                        }
                    }
                    written.push(Some(rec));
                }
                Ok((written, Effects::default()))
            },
        )
    }

    /// Finds users whose list is not current (missing, another model or tokenization, an
    /// older history stamp, a deleted item) and queues them in memory. Runs after open, a
    /// model attach, a tokenization change and deletions (from the dispatcher, or from
    /// `wait_idle` without workers). Nothing to do before a model was ever attached.
    pub(crate) fn sweep(&self) -> Result<()> {
        let (model_id, sid_version) = {
            let d = self.inner.derived.read();
            (d.model_id.clone(), d.sid_version())
        };
        let Some(model_id) = model_id else {
            return Ok(());
        };
        let queue = &self.inner.refresh.queue;
        let topk = self.inner.store.tree(TreeId::Topk);
        let mut found = Vec::new();
        for entry in self.inner.store.tree(TreeId::Histories).iter() {
            let (k, v) = entry?;
            let user = keys::parse_text("histories", &k)?;
            if queue.contains(&user) {
                continue;
            }
            let version = HistoryView::parse(&k, &v)?.version();
            let current = match topk.get(&k)? {
                None => false,
                Some(b) => TopkView::parse(&k, &b).is_ok_and(|view| {
                    view.model_id() == &*model_id
                        && Some(view.sid_version()) == sid_version
                        && view.history_version() == version
                        && self.all_live(&view)
                }),
            };
            if !current {
                found.push((Arc::from(user.as_str()), 0));
                if found.len() == ENQUEUE_CHUNK {
                    queue.push(std::mem::take(&mut found), false);
                }
            }
        }
        queue.push(found, false);
        Ok(())
    }

    fn all_live(&self, view: &TopkView<'_>) -> bool {
        let d = self.inner.derived.read();
        (0..view.len()).all(|i| d.catalog.get(view.item(i).0).is_some_and(|m| m.live))
    }

    /// A written list as an answer (for `refresh_now`).
    pub(super) fn list_answer(&self, user: &str, rec: &TopkRecord) -> Recommendation {
        let items = self.name_live(rec.items.iter().map(|&(id, s)| (id, f64::from(s))));
        Recommendation {
            user: user.to_string(),
            source: Source::Model,
            history_version: rec.history_version,
            stale: false,
            stamps: Some(ListStamps {
                model_id: rec.model_id.clone(),
                sid_version: rec.sid_version,
                computed_at_ms: rec.computed_at_ms,
            }),
            items,
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

#[cfg(feature = "fuzzing")]
impl Db {
    /// The stored list of `user`, as recorded (for the fuzz harness's oracle).
    #[doc(hidden)]
    pub fn cached_list(
        &self,
        user: &str,
    ) -> Result<Option<crate::fuzzing::refresh_model::CachedList>> {
        let stored = match self.cluster() {
            Some(tier) => tier.read(user, 0)?.list.map(|(bytes, _)| bytes),
            None => self
                .inner
                .store
                .get(TreeId::Topk, user.as_bytes())?
                .map(|b| b.to_vec()),
        };
        let Some(bytes) = stored else {
            return Ok(None);
        };
        let view = TopkView::parse(user.as_bytes(), &bytes)?;
        Ok(Some(crate::fuzzing::refresh_model::CachedList {
            history_version: view.history_version(),
            model_id: view.model_id().to_string(),
            sid_version: view.sid_version(),
            computed_at_ms: view.computed_at_ms(),
            items: (0..view.len()).map(|i| view.item(i)).collect(),
        }))
    }

    /// Fault injection for tests: a worker refreshing `user` panics (`None` clears it).
    #[doc(hidden)]
    pub fn inject_refresh_panic(&self, user: Option<&str>) {
        *self.inner.refresh.panic_on.lock() = user.map(str::to_string);
    }
}

#[cfg(feature = "fuzzing")]
impl Db {
    /// For the cache benchmark's baseline: a raw sled get of `user`'s cached list bytes (the
    /// same bytes `recommend` reads), returning their length.
    #[doc(hidden)]
    pub fn raw_cached_list_len(&self, user: &str) -> Result<Option<usize>> {
        Ok(self
            .inner
            .store
            .get(TreeId::Topk, user.as_bytes())?
            .map(|b| b.len()))
    }
}
