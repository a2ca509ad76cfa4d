//! Goal: a full disk never leaves a database unopenable or loses an acknowledged `Sync` write:
//! once space is back, the database opens, `check()` is clean and every acknowledged write is
//! there.
//!
//! Method (`full_disk_then_free_space_reopens_clean`): a 4 MiB tmpfs is mounted (root only;
//! without the permission the test prints `SKIPPED` and why), a ballast file of random size takes
//! part of it, and a child process writes with `Durability::Sync` until the disk is full: a
//! stream of interaction batches, or a JSONL item import in batches (chosen per case), printing
//! each acknowledgement. The child exits at its first error. The parent deletes the ballast,
//! reopens, runs `check()` and looks for every acknowledged write. 3 cases;
//! `CONVERGEDB_DISKFULL_CASES=<n>` (and `CONVERGEDB_DISKFULL_SEED`) for a campaign.
//!
//! `a_leftover_generating_snapshot_does_not_block_open` reproduces, without root, the state a
//! full disk left in the field: an empty `snap.*.generating` file beside the database.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use convergedb::import::{items_jsonl, ImportOptions};
use convergedb::{Config, Durability, Error, Interaction, Item};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CHILD_DIR_ENV: &str = "CONVERGEDB_DISKFULL_CHILD_DIR";
const CHILD_IMPORT_ENV: &str = "CONVERGEDB_DISKFULL_CHILD_IMPORT";
const CHILD_BATCH_ENV: &str = "CONVERGEDB_DISKFULL_CHILD_BATCH";
const TMPFS_BYTES: u64 = 4 * 1024 * 1024;
const ITEMS: usize = 30;
const CASE_TIMEOUT: Duration = Duration::from_secs(120);
/// More than a 4 MiB disk can hold in any of the modes: the disk must fill first.
const MAX_WRITES: usize = 200_000;

#[test]
fn a_leftover_generating_snapshot_does_not_block_open() {
    let dir = common::tempdir();
    let db = Config::new(dir.path())
        .durability(Durability::Sync)
        .open()
        .unwrap();
    db.put_items(&[Item::new("a"), Item::new("b")]).unwrap();
    db.record_interactions(&[Interaction::new("u", "a", 1)])
        .unwrap();
    db.close().unwrap();
    // What sled 0.34 leaves when the disk fills while it writes a snapshot: the file is created,
    // nothing fits in it, and the rename to `snap.<lsn>` never happens. The name sorts after
    // every real snapshot, so sled would read it first.
    let leftover = dir.path().join("snap.FFFFFFFFFFFFFFF0.generating");
    std::fs::write(&leftover, b"").unwrap();
    let db = Config::new(dir.path())
        .open()
        .expect("an empty leftover snapshot must not block the open");
    assert!(!leftover.exists(), "the leftover file was not removed");
    assert_eq!(db.history("u").unwrap().entries.len(), 1);
    common::assert_clean(&db);
    db.close().unwrap();
}

/// The writing child: Sync writes into the database until the first error.
#[test]
fn disk_full_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let batch: usize = std::env::var(CHILD_BATCH_ENV).unwrap().parse().unwrap();
    let db = match Config::new(&dir)
        .durability(Durability::Sync)
        .cache_capacity_bytes(1024 * 1024)
        .open()
    {
        Ok(db) => db,
        Err(e) => {
            println!("stopped open: {e}");
            return;
        }
    };
    let items: Vec<Item> = (0..ITEMS).map(|i| Item::new(format!("i{i}"))).collect();
    if let Err(e) = db.put_items(&items) {
        println!("stopped items: {e}");
        return;
    }
    println!("ack items");
    if let Some(file) = std::env::var_os(CHILD_IMPORT_ENV) {
        let opts = ImportOptions {
            batch_size: batch,
            ..ImportOptions::default()
        };
        match items_jsonl(&db, Path::new(&file), &opts) {
            Ok(r) => println!("ack import {}", r.items),
            Err(Error::ImportPartial {
                committed, source, ..
            }) => println!("ack import {committed}\nstopped import: {source}"),
            Err(e) => println!("stopped import: {e}"),
        }
        return;
    }
    let mut n = 0;
    while n < MAX_WRITES {
        let list: Vec<Interaction> = (n..n + batch)
            .map(|t| Interaction::new(format!("u{}", t % 13), format!("i{}", t % ITEMS), t as i64))
            .collect();
        if let Err(e) = db.record_interactions(&list) {
            println!("stopped stream: {e}");
            return;
        }
        n += batch;
        println!("ack upto {n}");
    }
}

/// The tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_BYTES}")])
            .arg("tmpfs")
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs(at.to_path_buf()))
        } else {
            Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// What the child acknowledged, and why it stopped.
struct Acks {
    items: bool,
    stream_upto: usize,
    imported: usize,
    stopped: String,
}

fn run_child(dir: &Path, batch: usize, import: Option<&Path>) -> Acks {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "disk_full_child",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(CHILD_DIR_ENV, dir)
    .env(CHILD_BATCH_ENV, batch.to_string())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(file) = import {
        cmd.env(CHILD_IMPORT_ENV, file);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let lines: Vec<String> = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect();
        let _ = tx.send(lines);
    });
    let lines = match rx.recv_timeout(CASE_TIMEOUT) {
        Ok(lines) => lines,
        Err(_) => {
            let _ = child.kill();
            panic!("the writing child hung on a full disk");
        }
    };
    child.wait().unwrap();
    let mut acks = Acks {
        items: false,
        stream_upto: 0,
        imported: 0,
        stopped: String::new(),
    };
    for line in &lines {
        // libtest may print "test NAME ... " before the first line.
        let line = line.rsplit(" ... ").next().unwrap_or(line);
        if line == "ack items" {
            acks.items = true;
        } else if let Some(n) = line.strip_prefix("ack upto ") {
            acks.stream_upto = n.parse().unwrap();
        } else if let Some(n) = line.strip_prefix("ack import ") {
            acks.imported = n.parse().unwrap();
        } else if let Some(why) = line.strip_prefix("stopped ") {
            acks.stopped = why.to_string();
        }
    }
    acks
}

fn import_file(path: &Path, rng: &mut ChaCha8Rng) -> usize {
    use std::io::Write;
    let n = 3_000;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        let len = rng.gen_range(100..3_000);
        let item = serde_json::json!({"key": format!("big{i}"), "title": "x".repeat(len)});
        writeln!(out, "{item}").unwrap();
    }
    out.flush().unwrap();
    n
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
        .unwrap_or(default)
}

/// Writes the ballast. The previous case's files may still hold their space for a moment after
/// their removal (sled's I/O threads close them asynchronously after the handle is dropped, and a
/// killed child's files are freed when the kernel reaps it), so a full tmpfs is retried for up
/// to 10 s before the case fails.
fn write_ballast(path: &Path, len: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match std::fs::write(path, vec![1u8; len]) {
            Ok(()) => return,
            Err(e)
                if e.kind() == std::io::ErrorKind::StorageFull
                    && std::time::Instant::now() < deadline =>
            {
                let _ = std::fs::remove_file(path);
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("writing the ballast {}: {e}", path.display()),
        }
    }
}

#[test]
fn full_disk_then_free_space_reopens_clean() {
    let cases = env_u64("CONVERGEDB_DISKFULL_CASES", 3);
    let seed = env_u64("CONVERGEDB_DISKFULL_SEED", 20261202);
    let root = common::tempdir();
    let tmpfs = match Tmpfs::mount(&root.path().join("mnt")) {
        Ok(t) => t,
        Err(why) => {
            println!(
                "SKIPPED full_disk_then_free_space_reopens_clean: no small disk to fill: {why}"
            );
            return;
        }
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut stops: std::collections::BTreeMap<String, u64> = Default::default();
    let (mut acked_stream, mut acked_items) = (0usize, 0usize);
    for case in 0..cases {
        let dir = tmpfs.0.join("db");
        let ballast = tmpfs.0.join("ballast");
        // At least 1 MiB comes back: sled needs room for a new 512 KiB log segment to open.
        let ballast_len = rng.gen_range(TMPFS_BYTES / 4..TMPFS_BYTES * 3 / 4);
        write_ballast(&ballast, ballast_len as usize);
        let import = rng.gen_bool(0.5);
        let batch = if import {
            rng.gen_range(1..200)
        } else {
            rng.gen_range(1..60)
        };
        let file = root.path().join("items.jsonl");
        if import {
            import_file(&file, &mut rng);
        }
        let acks = run_child(&dir, batch, import.then_some(file.as_path()));
        let what = format!(
            "case {case} (seed {seed}, ballast {ballast_len} bytes, {} batch {batch})",
            if import { "import" } else { "stream" }
        );
        assert!(
            !acks.stopped.is_empty(),
            "{what}: the child stopped without an error (did the disk not fill?)"
        );
        assert!(
            acks.stopped.contains("No space left") || acks.stopped.contains("StorageFull"),
            "{what}: the child stopped for another reason than a full disk: {}",
            acks.stopped
        );
        if std::env::var_os("CONVERGEDB_DISKFULL_VERBOSE").is_some() {
            println!(
                "{what}: acknowledged {} interactions, {} imported items; stopped {}",
                acks.stream_upto, acks.imported, acks.stopped
            );
        }
        let kind: String = acks
            .stopped
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        *stops.entry(kind).or_default() += 1;

        std::fs::remove_file(&ballast).unwrap();
        let db = Config::new(&dir).open().unwrap_or_else(|e| {
            panic!(
                "{what}: after space returned, open failed: {e} (the child stopped with: {})",
                acks.stopped
            )
        });
        common::assert_clean(&db);
        if acks.items {
            for i in 0..ITEMS {
                db.get_item(&format!("i{i}"))
                    .unwrap_or_else(|e| panic!("{what}: acknowledged item i{i} lost: {e}"));
            }
        }
        for i in 0..acks.imported {
            db.get_item(&format!("big{i}"))
                .unwrap_or_else(|e| panic!("{what}: acknowledged imported item big{i} lost: {e}"));
        }
        let stored = db.stats().unwrap().interactions_recorded as usize;
        assert!(
            stored >= acks.stream_upto,
            "{what}: {} acknowledged interactions, {stored} recovered",
            acks.stream_upto
        );
        for t in (0..acks.stream_upto)
            .step_by(97)
            .chain(acks.stream_upto.checked_sub(1))
        {
            let h = db.history(&format!("u{}", t % 13)).unwrap();
            assert!(
                h.entries.iter().any(|e| e.timestamp == t as i64),
                "{what}: acknowledged interaction {t} lost"
            );
        }
        db.close().unwrap();
        acked_stream += acks.stream_upto;
        acked_items += acks.imported;
        std::fs::remove_dir_all(&dir).unwrap();
    }
    println!(
        "{cases} fills of a {TMPFS_BYTES}-byte tmpfs (seed {seed}): every database reopened clean; \
         {acked_stream} acknowledged interactions and {acked_items} acknowledged imported items, none lost; \
         the writers stopped with: {stops:?}"
    );
}
