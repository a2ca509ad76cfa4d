//! Model-based op sequences: an [`Op`] decoded from fuzzer bytes is applied to a real [`Db`]
//! and to the reference [`Model`]; the outcomes (value or error class) must agree, then the
//! whole observable state is compared and `check()` must be clean, after every step.
//!
//! The ops themselves and their generators are in [`super::op`] (re-exported here).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};

use super::model::{kind_of, Kind, Model};
pub use super::op::{apply_to_model, config, limits, seeded_op, Op, ITEM_KEYS, USERS};
use crate::cluster::ClusterConfig;
use crate::{Config, Db, Durability, Error, TokenizeOptions};

/// A database and its model, compared after every op.
pub struct Harness {
    dir: PathBuf,
    durability: Durability,
    /// The per-user tier's cluster (`None`: the local store).
    cluster: Option<ClusterConfig>,
    /// With a cluster: a local database given the same catalog writes, where `tokenize` runs
    /// (a cluster node refuses it); its table reaches the node by export and import.
    shadow: Option<(Db, PathBuf)>,
    db: Option<Db>,
    /// The reference model.
    pub model: Model,
    /// Ops applied so far.
    pub steps: u64,
    /// Per call: (succeeded, failed as the model predicted), for coverage reports.
    pub outcomes: BTreeMap<&'static str, (u64, u64)>,
}

/// Opens `config`, retrying while sled still holds the lock of a just-dropped handle
/// (spacejam/sled#1234 releases it asynchronously).
pub fn open_retrying(config: &Config) -> crate::Result<Db> {
    let mut attempts = 0;
    loop {
        match config.clone().open() {
            Err(Error::InUse { .. }) if attempts < 1000 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            other => return other,
        }
    }
}

/// A catalog write applied to the shadow database too, which must end the same way.
fn mirrored<T>(
    shadow: &Option<(Db, PathBuf)>,
    got: &crate::Result<T>,
    write: impl Fn(&Db) -> crate::Result<T>,
) -> Result<(), String> {
    let Some((shadow, _)) = shadow else {
        return Ok(());
    };
    match (got, write(shadow)) {
        (Ok(_), Ok(_)) => Ok(()),
        (Err(a), Err(b)) if kind_of(a) == kind_of(&b) => Ok(()),
        (a, b) => Err(format!(
            "the shadow database disagrees: node {:?}, shadow {:?}",
            a.as_ref().err(),
            b.err()
        )),
    }
}

/// `tokenize` for a cluster node: refused on the node itself; trained on the shadow database
/// (same catalog), exported and imported through the node (the catalog log). The outer error
/// is a harness failure, the inner result the call's outcome.
fn tokenize_through(
    node: &Db,
    shadow: &Db,
    opts: &TokenizeOptions,
    path: &Path,
) -> Result<crate::Result<crate::SidInfo>, String> {
    match node.tokenize(opts, None) {
        Err(Error::InvalidArgument(_)) => {}
        other => {
            return Err(format!(
                "tokenize on a cluster node: {other:?}, not refused"
            ))
        }
    }
    if let Err(e) = shadow.tokenize(opts, None) {
        return Ok(Err(e));
    }
    shadow
        .export_tokenization(path)
        .map_err(|e| format!("export from the shadow: {e}"))?;
    let imported = node.import_tokenization(path);
    let _ = std::fs::remove_file(path);
    Ok(imported)
}

/// `config` with its per-user tier on `cluster`, if any.
fn with_cluster(config: Config, cluster: &Option<ClusterConfig>) -> Config {
    match cluster {
        Some(c) => config.cluster(c.clone()),
        None => config,
    }
}

fn outcome<T: PartialEq + std::fmt::Debug>(
    what: &str,
    db: crate::Result<T>,
    model: Result<T, Kind>,
) -> Result<(), String> {
    counted(what, db, model, &mut BTreeMap::new())
}

/// Like [`outcome`], counting the agreed outcome in `counts` under `what`.
fn counted<T: PartialEq + std::fmt::Debug>(
    what: &str,
    db: crate::Result<T>,
    model: Result<T, Kind>,
    counts: &mut BTreeMap<&'static str, (u64, u64)>,
) -> Result<(), String> {
    let name: &'static str = match what {
        "put" => "put",
        "insert" => "insert",
        "delete" => "delete",
        "put_vectors" => "put_vectors",
        "record_interactions" => "record_interactions",
        "recommend" => "recommend",
        "history" => "history",
        "get_item" => "get_item",
        "tokenize" => "tokenize",
        "flush" => "flush",
        "attach" => "attach",
        "refresh" => "refresh",
        _ => "other",
    };
    let entry = counts.entry(name).or_default();
    if db.is_ok() {
        entry.0 += 1;
    } else {
        entry.1 += 1;
    }
    match (db, model) {
        (Ok(a), Ok(b)) if a == b => Ok(()),
        (Err(e), Err(k)) if kind_of(&e) == k => Ok(()),
        (Ok(a), Ok(b)) => Err(format!("{what}: db returned {a:?}, model {b:?}")),
        (Ok(a), Err(k)) => Err(format!("{what}: db returned Ok({a:?}), model expects {k}")),
        (Err(e), Ok(b)) => Err(format!("{what}: db failed with {e:?}, model expects {b:?}")),
        (Err(e), Err(k)) => Err(format!("{what}: db failed with {e:?}, model expects {k}")),
    }
}

impl Harness {
    /// A fresh database in `dir` (which must be empty or missing).
    pub fn new(dir: &Path, durability: Durability) -> Result<Harness, String> {
        Harness::new_on(dir, durability, None)
    }

    /// A fresh database in `dir` whose per-user tier is `cluster` (`None`: the local store).
    /// The cluster's namespace must be unused: the model starts with no users.
    pub fn new_on(
        dir: &Path,
        durability: Durability,
        cluster: Option<ClusterConfig>,
    ) -> Result<Harness, String> {
        let config = with_cluster(config(dir, durability), &cluster);
        let db = open_retrying(&config).map_err(|e| format!("open: {e}"))?;
        let mut model = Model::new(limits());
        model.cluster = cluster.is_some();
        let shadow = match cluster {
            Some(_) => {
                let path = dir.with_extension("shadow");
                let shadow = open_retrying(&super::op::config(&path, Durability::default()))
                    .map_err(|e| format!("open the shadow: {e}"))?;
                Some((shadow, path))
            }
            None => None,
        };
        Ok(Harness {
            dir: dir.to_path_buf(),
            durability,
            cluster,
            shadow,
            db: Some(db),
            model,
            steps: 0,
            outcomes: BTreeMap::new(),
        })
    }

    /// Opens the existing database in `dir` against `model`, the state it should hold.
    pub fn attach(dir: &Path, durability: Durability, model: Model) -> Result<Harness, String> {
        let db = open_retrying(&config(dir, durability).create_if_missing(false))
            .map_err(|e| format!("open: {e}"))?;
        Ok(Harness {
            dir: dir.to_path_buf(),
            durability,
            cluster: None,
            shadow: None,
            db: Some(db),
            model,
            steps: 0,
            outcomes: BTreeMap::new(),
        })
    }

    /// Gives the model back, dropping the database handle (without a final flush error check).
    pub fn into_model(mut self) -> Model {
        self.db = None;
        std::mem::replace(&mut self.model, Model::new(limits()))
    }

    /// The open database.
    pub fn db(&self) -> &Db {
        self.db
            .as_ref()
            .expect("the harness always holds an open database between ops")
    }

    /// Closes (if still open) and reopens the database.
    pub fn reopen(&mut self) -> Result<(), String> {
        if let Some(db) = self.db.take() {
            db.close().map_err(|e| format!("close: {e}"))?;
        }
        let config = with_cluster(config(&self.dir, self.durability), &self.cluster);
        let db = open_retrying(&config).map_err(|e| format!("reopen: {e}"))?;
        self.db = Some(db);
        Ok(())
    }

    /// Applies `op` to the database and the model and compares the outcomes (not the state).
    pub fn apply(&mut self, op: &Op) -> Result<(), String> {
        self.steps += 1;
        let db = self.db().clone();
        let m = &mut self.model;
        let c = &mut self.outcomes;
        match op {
            Op::Put { items, insert_only } => {
                let put = |db: &Db| {
                    if *insert_only {
                        db.insert_items(items)
                    } else {
                        db.put_items(items)
                    }
                };
                let got = put(&db);
                mirrored(&self.shadow, &got, put)?;
                counted(
                    if *insert_only { "insert" } else { "put" },
                    got,
                    m.put(items, *insert_only),
                    c,
                )
            }
            Op::Delete(keys) => {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                let got = db.delete_items(&keys);
                mirrored(&self.shadow, &got, |db| db.delete_items(&keys))?;
                counted("delete", got, m.delete(&keys), c)
            }
            Op::PutVectors(name, vectors) => {
                let got = db.put_vectors(name, vectors);
                mirrored(&self.shadow, &got, |db| db.put_vectors(name, vectors))?;
                counted("put_vectors", got, m.put_vectors(name, vectors), c)
            }
            Op::Record(events) => counted(
                "record_interactions",
                db.record_interactions(events),
                m.record(events),
                c,
            ),
            Op::Recommend(user, k) => counted(
                "recommend",
                db.recommend(user, *k),
                m.recommend(user, *k),
                c,
            ),
            Op::History(user) => counted("history", db.history(user), m.history(user), c),
            Op::Get(key) => {
                counted("get_item", db.get_item(key), m.get_item(key), c)?;
                outcome("item_id", db.item_id(key), m.item_id(key))
            }
            Op::Tokenize {
                vector,
                levels,
                codes,
                seed,
                balance,
            } => {
                let mut opts = TokenizeOptions::new(vector.clone());
                opts.levels = *levels;
                opts.codes = *codes;
                opts.iterations = 2;
                opts.seed = *seed;
                opts.balance_last_level = *balance;
                opts.threads = 1;
                let Some((shadow, _)) = &self.shadow else {
                    let got = db.tokenize(&opts, None).map(|_| ());
                    return counted("tokenize", got, m.tokenize(vector, *levels, *codes), c);
                };
                let file = self.dir.with_extension("shadow.sid.json");
                let before = m.sid.as_ref().map(|s| s.version);
                match tokenize_through(&db, shadow, &opts, &file)? {
                    // The same table as the node's (same fingerprint): the import is a no-op.
                    Ok(info) if Some(info.version) == before => {
                        counted("tokenize", Ok(()), Ok(()), c)
                    }
                    got => counted(
                        "tokenize",
                        got.map(|_| ()),
                        m.tokenize(vector, *levels, *codes),
                        c,
                    ),
                }
            }
            Op::Flush => counted("flush", db.flush(), Ok(()), c),
            Op::ExportImport => {
                let path = self.dir.with_extension("sid.json");
                let result = export_import(&db, m, &path);
                let _ = std::fs::remove_file(&path);
                c.entry("export_import").or_default().0 += u64::from(result.is_ok());
                result
            }
            Op::Reopen(close) => {
                drop(db);
                c.entry("reopen").or_default().0 += 1;
                m.refresh.reopen(m.cluster);
                if !*close {
                    self.db = None; // dropped without close: the handle's drop flushes
                }
                self.reopen()
            }
            Op::AttachGenerator(i) => {
                let id = super::op::GENERATORS[*i % super::op::GENERATORS.len()];
                let got = db.attach_test_generator(id);
                m.refresh.attach(id);
                counted("attach", got, Ok(()), c)
            }
            Op::Refresh => {
                let want = m.wait_idle();
                let got = db.wait_idle();
                let refreshed = want.clone().ok();
                counted("refresh", got, want.map(|_| ()), c)?;
                match refreshed {
                    Some(users) => self.adopt_lists(&users),
                    None => Ok(()),
                }
            }
        }
    }

    /// After a refresh: every refreshed user's list is current and equals a synchronous
    /// generation; every other list is unchanged. The model adopts the new lists.
    fn adopt_lists(&mut self, refreshed: &BTreeSet<String>) -> Result<(), String> {
        let db = self.db().clone();
        let m = &mut self.model;
        let mut adopted = BTreeMap::new();
        for user in m.histories.keys() {
            let got = db
                .cached_list(user)
                .map_err(|e| format!("cached_list({user:?}): {e}"))?;
            if !refreshed.contains(user) {
                if got.as_ref() != m.refresh.lists.get(user) {
                    return Err(format!(
                        "list of {user:?} changed without a refresh: db {got:?}, model {:?}",
                        m.refresh.lists.get(user)
                    ));
                }
                continue;
            }
            let Some(list) = got else {
                return Err(format!("{user:?} was refreshed but has no list"));
            };
            let version = m.histories.get(user).map_or(0, |h| h.version);
            let want_stamps = (
                version,
                m.refresh.attached.clone(),
                m.sid.as_ref().map(|s| s.version),
            );
            let got_stamps = (
                list.history_version,
                Some(list.model_id.clone()),
                Some(list.sid_version),
            );
            if got_stamps != want_stamps {
                return Err(format!(
                    "list of {user:?} stamped {got_stamps:?}, expected {want_stamps:?}"
                ));
            }
            let generated = db
                .generate(user, db.refresh_params().cache_k)
                .map_err(|e| format!("generate({user:?}): {e}"))?;
            let ids: Vec<u64> = list.items.iter().map(|i| i.0).collect();
            let want: Vec<u64> = generated.items.iter().map(|i| i.item_id).collect();
            if ids != want {
                return Err(format!(
                    "list of {user:?} is {ids:?}, a synchronous generation gives {want:?}"
                ));
            }
            adopted.insert(user.clone(), list);
        }
        m.refreshed(adopted);
        Ok(())
    }

    /// Compares the whole observable state with the model and runs `check()`.
    pub fn compare(&self) -> Result<(), String> {
        let db = self.db();
        let m = &self.model;
        let report = db.check().map_err(|e| format!("check(): {e}"))?;
        if !report.is_clean() {
            return Err(format!("check() found problems: {:?}", report.problems));
        }
        let stats = db.stats().map_err(|e| format!("stats(): {e}"))?;
        let want = (
            m.live_items(),
            m.items.len() as u64 - m.live_items(),
            m.catalog_version,
        );
        let got = (stats.items, stats.deleted_items, stats.catalog_version);
        if got != want {
            return Err(format!(
                "stats (items, deleted, catalog_version): db {got:?}, model {want:?}"
            ));
        }
        if stats.vector_dims != m.dims {
            return Err(format!(
                "stats dims: db {:?}, model {:?}",
                stats.vector_dims, m.dims
            ));
        }
        match self.cluster {
            Some(_) => self.compare_cluster_lists()?,
            None => self.compare_local_tier(&stats)?,
        }
        self.compare_reads()
    }

    /// The local per-user tier's counts, kinds, users, lists and queue.
    fn compare_local_tier(&self, stats: &crate::Stats) -> Result<(), String> {
        let db = self.db();
        let m = &self.model;
        let got = (stats.users, stats.interactions, stats.interactions_recorded);
        let want = (m.histories.len() as u64, m.interactions(), m.recorded);
        if got != want {
            return Err(format!(
                "stats (users, interactions, recorded): db {got:?}, model {want:?}"
            ));
        }
        if stats.kinds != m.kinds {
            return Err(format!(
                "stats kinds: db {:?}, model {:?}",
                stats.kinds, m.kinds
            ));
        }
        let users: Vec<String> = db
            .users()
            .collect::<crate::Result<_>>()
            .map_err(|e| format!("users(): {e}"))?;
        let want_users: Vec<String> = m.histories.keys().cloned().collect();
        if users != want_users {
            return Err(format!("users(): db {users:?}, model {want_users:?}"));
        }
        let (lists, queued) = (stats.cached_lists, db.refresh_stats().queued);
        let want = (
            m.refresh.lists.len() as u64,
            m.refresh.queued().len() as u64,
        );
        if (lists, queued) != want {
            return Err(format!(
                "(cached lists, queued): db {:?}, model {want:?} (queued in the model: {:?})",
                (lists, queued),
                m.refresh.queued()
            ));
        }
        Ok(())
    }

    /// On a cluster node, which counts no users and holds no lists: every user's list in the
    /// cluster (the queue is seen through the reads' stale flags and what `wait_idle`
    /// refreshes).
    fn compare_cluster_lists(&self) -> Result<(), String> {
        let db = self.db();
        for user in USERS {
            let got = db
                .cached_list(user)
                .map_err(|e| format!("cached_list({user:?}): {e}"))?;
            let want = self.model.refresh.lists.get(*user);
            if got.as_ref() != want {
                return Err(format!("list of {user:?}: db {got:?}, model {want:?}"));
            }
        }
        Ok(())
    }

    /// Items, histories, recommendations and the tokenization, key by key.
    fn compare_reads(&self) -> Result<(), String> {
        let db = self.db();
        let m = &self.model;
        for key in ITEM_KEYS {
            outcome(
                &format!("get_item({key:?})"),
                db.get_item(key),
                m.get_item(key),
            )?;
            outcome(
                &format!("item_id({key:?})"),
                db.item_id(key),
                m.item_id(key),
            )?;
        }
        for user in USERS {
            outcome(
                &format!("history({user:?})"),
                db.history(user),
                m.history(user),
            )?;
            outcome(
                &format!("recommend({user:?})"),
                db.recommend(user, 100),
                m.recommend(user, 100),
            )?;
        }
        self.compare_sids()
    }

    /// Which items hold codes, the table, and that `items_for_sid` and `allowed_next` agree
    /// with the codes `sid()` returns.
    fn compare_sids(&self) -> Result<(), String> {
        let db = self.db();
        let m = &self.model;
        let info = db.sid_info();
        let got = info
            .as_ref()
            .map(|i| (i.version, i.levels, i.vector.clone()));
        let want = m
            .sid
            .as_ref()
            .map(|s| (s.version, s.levels, Some(s.vector.clone())));
        if got != want {
            return Err(format!("sid_info: db {got:?}, model {want:?}"));
        }
        let mut tuples: BTreeMap<Vec<u16>, Vec<(u64, String)>> = BTreeMap::new();
        for (key, mi) in &m.items {
            let codes = db.sid(key).map_err(|e| format!("sid({key:?}): {e}"))?;
            if codes.is_some() != mi.has_codes {
                return Err(format!(
                    "sid({key:?}): db {codes:?}, model expects codes: {}",
                    mi.has_codes
                ));
            }
            if let (Some(codes), Some(s)) = (codes, &m.sid) {
                if codes.len() != s.levels {
                    return Err(format!("sid({key:?}) = {codes:?}: {} levels", s.levels));
                }
                tuples.entry(codes).or_default().push((mi.id, key.clone()));
            }
        }
        let mut prefixes: BTreeMap<Vec<u16>, BTreeSet<u16>> = BTreeMap::new();
        for (codes, items) in &mut tuples {
            items.sort();
            let want: Vec<String> = items.iter().map(|(_, k)| k.clone()).collect();
            let got = db.items_for_sid(codes);
            if got != want {
                return Err(format!(
                    "items_for_sid({codes:?}): db {got:?}, sid() says {want:?}"
                ));
            }
            for l in 0..codes.len() {
                prefixes
                    .entry(codes[..l].to_vec())
                    .or_default()
                    .insert(codes[l]);
            }
        }
        if prefixes.is_empty() {
            prefixes.insert(Vec::new(), BTreeSet::new());
        }
        for (prefix, next) in prefixes {
            let got = db.allowed_next(&prefix);
            let want: Vec<u16> = next.into_iter().collect();
            if got != want {
                return Err(format!(
                    "allowed_next({prefix:?}): db {got:?}, sid() says {want:?}"
                ));
            }
        }
        Ok(())
    }

    /// Applies `op` and compares everything; the error names the step and the op.
    pub fn step(&mut self, op: &Op) -> Result<(), String> {
        self.apply(op)
            .and_then(|()| self.compare())
            .map_err(|e| format!("step {} ({op:?}): {e}", self.steps))
    }

    /// Closes the database.
    pub fn close(mut self) -> Result<(), String> {
        if let Some((shadow, path)) = self.shadow.take() {
            shadow
                .close()
                .map_err(|e| format!("close the shadow: {e}"))?;
            let _ = std::fs::remove_dir_all(path);
        }
        match self.db.take() {
            Some(db) => db.close().map_err(|e| format!("close: {e}")),
            None => Ok(()),
        }
    }
}

/// Exports the tokenization and imports the file back: without a table both fail; with one,
/// the import is a no-op or a new table version, and every item keeps exactly its codes.
fn export_import(db: &Db, m: &mut Model, path: &Path) -> Result<(), String> {
    let keys: Vec<String> = m.items.keys().cloned().collect();
    let codes = |db: &Db| -> Result<Vec<Option<Vec<u16>>>, String> {
        keys.iter()
            .map(|k| db.sid(k).map_err(|e| format!("sid({k:?}): {e}")))
            .collect()
    };
    let before = codes(db)?;
    let exported = db.export_tokenization(path);
    let Some(sid) = m.sid.as_mut() else {
        return match exported {
            Err(Error::InvalidTokenization(_)) => Ok(()),
            other => Err(format!("export without a table: {other:?}")),
        };
    };
    exported.map_err(|e| format!("export: {e}"))?;
    let info = db
        .import_tokenization(path)
        .map_err(|e| format!("import of the exported file: {e}"))?;
    if info.version != sid.version && info.version != sid.version + 1 {
        return Err(format!(
            "import of the exported file: version {} after {}",
            info.version, sid.version
        ));
    }
    sid.version = info.version;
    let after = codes(db)?;
    if after != before {
        return Err(format!(
            "import of the exported file changed codes: {before:?} -> {after:?}"
        ));
    }
    Ok(())
}

/// Outcome counts per call: (succeeded, failed as the model predicted).
pub type Outcomes = BTreeMap<&'static str, (u64, u64)>;

/// Adds the counts of `more` to `all` (a campaign's totals over its seeds).
pub fn add_outcomes(all: &mut Outcomes, more: Outcomes) {
    for (call, (ok, err)) in more {
        let e = all.entry(call).or_default();
        e.0 += ok;
        e.1 += err;
    }
}

/// Decodes ops from `data` (at most `max_ops`) and runs them on a fresh database in a new
/// temporary directory under `parent`; returns the number of ops run, or the first divergence.
pub fn run_bytes(parent: &Path, data: &[u8], max_ops: usize) -> Result<usize, String> {
    run_bytes_counted(parent, data, max_ops).map(|(n, _)| n)
}

/// Like [`run_bytes`], also returning how each call ended.
pub fn run_bytes_counted(
    parent: &Path,
    data: &[u8],
    max_ops: usize,
) -> Result<(usize, Outcomes), String> {
    run_bytes_on(parent, data, max_ops, None)
}

/// Like [`run_bytes_counted`], with the per-user tier on `cluster` (its namespace unused).
pub fn run_bytes_on(
    parent: &Path,
    data: &[u8],
    max_ops: usize,
    cluster: Option<ClusterConfig>,
) -> Result<(usize, Outcomes), String> {
    let dir = TempDir::new(parent);
    let mut h = Harness::new_on(&dir.0, Durability::default(), cluster)?;
    let mut u = Unstructured::new(data);
    let mut n = 0;
    while n < max_ops && !u.is_empty() {
        let Ok(op) = Op::arbitrary(&mut u) else {
            break;
        };
        h.step(&op)?;
        n += 1;
    }
    let outcomes = std::mem::take(&mut h.outcomes);
    h.close()?;
    Ok((n, outcomes))
}

/// A directory removed on drop (the fuzz crate does not depend on `tempfile`).
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new unique directory path under `parent` (not created: the database creates it).
    pub fn new(parent: &Path) -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        TempDir(parent.join(format!("cdb-fuzz-{}-{n}", std::process::id())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
