//! Opening the sled files: path checks, the schema header, first-time initialisation.

use std::path::Path;

use super::commit::{stored_commit, AckFile};
use super::header::{check_header, encode_header, FORMAT_VERSION, HEADER_KEY};
use super::leftovers::remove_failed_snapshots;
use super::quiet_panic::quietly;
use super::records::{self, Counts};
use super::{keys, upgrade, Store, TreeId};
use crate::{Config, Error, Result};

/// Files sled 0.34 keeps in its directory; a non-empty directory without them is someone else's.
const SLED_MARKERS: [&str; 2] = ["conf", "db"];

pub(crate) fn open_store(config: &Config) -> Result<Store> {
    let path = config.path.as_path();
    check_directory(path, config.create_if_missing)?;
    // A snapshot a full disk left half-written would fail every open (`leftovers.rs`).
    remove_failed_snapshots(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;

    let mut sled_config = sled::Config::new()
        .path(path)
        .cache_capacity(config.cache_capacity_bytes)
        .mode(sled::Mode::HighThroughput);
    // No timer flush inside sled: with `Buffered`, convergedb's own flush thread and the writers
    // keep the loss bound (`db/flusher.rs`); sled's timer could fall behind under load.
    sled_config = sled_config.flush_every_ms(None);
    // sled can panic on some damaged files; a damaged file must be an error, never a crash, and
    // nothing may reach the host's stderr (`quiet_panic.rs`).
    let db = match quietly(|| open_waiting_for_lock(&sled_config)) {
        Ok(Ok(db)) => db,
        Ok(Err(sled::Error::Io(e))) if e.to_string().contains("could not acquire lock") => {
            return Err(Error::InUse {
                path: path.to_path_buf(),
            })
        }
        Ok(Err(e)) => return Err(Error::Storage(e)),
        Err(_) => {
            return Err(Error::corruption(
                "(sled)",
                path.to_string_lossy().as_bytes(),
                "the storage engine panicked while recovering its files",
            ))
        }
    };
    let trees = match quietly(|| {
        TreeId::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<std::result::Result<Vec<_>, _>>()
    }) {
        Ok(trees) => trees?,
        Err(_) => {
            return Err(Error::corruption(
                "(sled)",
                path.to_string_lossy().as_bytes(),
                "the storage engine panicked while opening its trees",
            ))
        }
    };
    let header = check_header_or_empty(&db, &trees, path)?;
    // Acknowledged writes sled's recovery dropped (`commit.rs`).
    let recovered = stored_commit(&trees[TreeId::Meta as usize])?;
    let ack = AckFile::open(path, recovered, config.accept_lost_writes)?;
    let mut store = Store {
        db,
        trees,
        history_chunk: 0,
        ack,
        last_commit: std::sync::atomic::AtomicU64::new(recovered),
    };
    match header {
        None => initialise(&mut store, config)?,
        Some(version) => open_existing(&mut store, config, version)?,
    }
    Ok(store)
}

/// How long `open` waits for the file lock of a handle that was just closed in this process.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens sled, retrying while its file lock is still held. sled 0.34 releases the lock of a
/// dropped `Db` asynchronously (its I/O threads hold the file a little longer), so closing a
/// database and reopening it at once can fail with "could not acquire lock" (spacejam/sled#1234).
/// A lock held by a live handle still fails, after `LOCK_WAIT`.
fn open_waiting_for_lock(sled_config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match sled_config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

fn check_directory(path: &Path, create_if_missing: bool) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    if !path.exists() {
        if create_if_missing {
            return std::fs::create_dir_all(path).map_err(io);
        }
        return Err(Error::NotADatabase {
            path: path.to_path_buf(),
            reason: "the directory does not exist (and create_if_missing is off)".into(),
        });
    }
    if !path.is_dir() {
        return Err(Error::NotADatabase {
            path: path.to_path_buf(),
            reason: "it is a file, not a directory".into(),
        });
    }
    let empty = std::fs::read_dir(path).map_err(io)?.next().is_none();
    if empty {
        if create_if_missing {
            return Ok(());
        }
        return Err(Error::NotADatabase {
            path: path.to_path_buf(),
            reason: "the directory is empty (and create_if_missing is off)".into(),
        });
    }
    if SLED_MARKERS.iter().all(|m| path.join(m).is_file()) {
        Ok(())
    } else {
        Err(Error::NotADatabase {
            path: path.to_path_buf(),
            reason: "the directory holds other files and no database".into(),
        })
    }
}

/// Opens an existing database: upgrades an older format in place (`upgrade.rs`), reads the
/// history layout, and finishes an upgrade a crash interrupted.
fn open_existing(store: &mut Store, config: &Config, version: u32) -> Result<()> {
    if version == 1 {
        upgrade::begin_v1_to_v2(store, config.history_chunk)?;
    }
    let meta = store.tree(TreeId::Meta).clone();
    store.history_chunk = match meta.get(keys::META_HISTORY_LAYOUT)? {
        Some(v) => records::decode_history_layout(&v)?,
        None => {
            return Err(Error::corruption(
                "meta",
                keys::META_HISTORY_LAYOUT,
                "missing history layout record",
            ))
        }
    };
    if meta.get(upgrade::META_UPGRADE)?.is_some() {
        upgrade::finish_v1_to_v2(store)?;
    }
    Ok(())
}

/// Checks the schema header; `Ok(None)` when there is none and the database is empty (to be
/// initialised), else the format version found.
fn check_header_or_empty(db: &sled::Db, trees: &[sled::Tree], path: &Path) -> Result<Option<u32>> {
    let meta = &trees[TreeId::Meta as usize];
    if let Some(bytes) = meta.get(HEADER_KEY)? {
        return Ok(Some(check_header(path, &bytes)?));
    }
    // No header: only a database that holds nothing at all may be initialised.
    let holds_data = !db.is_empty()
        || trees.iter().any(|t| !t.is_empty())
        || db.tree_names().iter().any(|n| !is_known_tree(n));
    if holds_data {
        return Err(Error::NotADatabase {
            path: path.to_path_buf(),
            reason: "a sled database without a convergedb schema header".into(),
        });
    }
    Ok(None)
}

fn initialise(store: &mut Store, config: &Config) -> Result<()> {
    store.transact(&[TreeId::Meta], |tx| {
        tx.insert(TreeId::Meta, HEADER_KEY, encode_header(FORMAT_VERSION))?;
        tx.insert(
            TreeId::Meta,
            keys::META_HISTORY_LAYOUT,
            records::encode_history_layout(config.history_chunk),
        )?;
        tx.set_counts(&Counts::initial())?;
        Ok(())
    })?;
    store.history_chunk = config.history_chunk;
    store.flush_acked()
}

fn is_known_tree(name: &[u8]) -> bool {
    name == b"__sled__default" || TreeId::ALL.iter().any(|t| t.name().as_bytes() == name)
}
