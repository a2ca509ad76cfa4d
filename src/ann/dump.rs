//! Dump files of an index and their verified reload.
//!
//! A generation is three files in `<db>/ann/`: `<base>.hnsw.graph` (the links) and
//! `<base>.hnsw.data` (the vectors), laid out in `codec.rs`, and `<base>.ids`, the internal-id →
//! item map:
//!
//! ```text
//! ids file = [magic b"CNVANNI1"][count: u64 LE][item id: u64 LE × count]   (0 = tombstone)
//! ```
//!
//! Bytes are decoded only after every file's length and SHA-256 match the manifest committed in
//! sled, so only what this database wrote is ever read; the decoder checks every length, id and
//! level all the same. Any failure is returned as a reason and the caller rebuilds from the
//! store.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::codec;
use super::index::{AnnIndex, IdMap};
use super::params::MAX_NB_CONNECTION;
use crate::store::{AnnManifest, DumpFile};

const IDS_MAGIC: &[u8; 8] = b"CNVANNI1";
pub(crate) const SUFFIXES: [&str; 3] = [".hnsw.graph", ".hnsw.data", ".ids"];

/// The folder of every dump of the database in `db_path`.
pub(crate) fn ann_dir(db_path: &Path) -> PathBuf {
    db_path.join("ann")
}

/// File stem of generation `generation` of vector `name`: a readable prefix of the name plus a
/// hash of it (names are arbitrary UTF-8; file names are not).
pub(crate) fn basename(name: &str, generation: u64) -> String {
    let readable: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(32)
        .collect();
    let hash = Sha256::digest(name.as_bytes());
    let short: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{readable}-{short}-g{generation}")
}

/// Writes generation files for `index` under `base` and returns their descriptions. The map is
/// read-locked throughout, so the graph and the ids file describe the same points.
pub(crate) fn write(dir: &Path, base: &str, index: &AnnIndex) -> Result<Vec<DumpFile>, String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for suffix in SUFFIXES {
        let _ = fs::remove_file(dir.join(format!("{base}{suffix}")));
    }
    index.with_map(|map| {
        let graph = index.graph();
        if graph.len() != map.items.len() {
            return Err(format!(
                "graph holds {} points but the id map {}",
                graph.len(),
                map.items.len()
            ));
        }
        write_with(&dir.join(format!("{base}.hnsw.graph")), |out| {
            codec::write_graph(graph, out)
        })?;
        write_with(&dir.join(format!("{base}.hnsw.data")), |out| {
            codec::write_data(graph, out)
        })?;
        write_ids(&dir.join(format!("{base}.ids")), &map.items)
    })?;
    let mut files = Vec::with_capacity(SUFFIXES.len());
    for suffix in SUFFIXES {
        let path = dir.join(format!("{base}{suffix}"));
        let f = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        f.sync_all()
            .map_err(|e| format!("sync {}: {e}", path.display()))?;
        let (len, sha256) = hash_file(&path)?;
        files.push(DumpFile {
            suffix: suffix.to_string(),
            len,
            sha256,
        });
    }
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(files)
}

fn write_with(
    path: &Path,
    f: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io)?);
    f(&mut out).map_err(io)?;
    out.flush().map_err(io)
}

fn write_ids(path: &Path, items: &[u64]) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut out = BufWriter::new(File::create(path).map_err(io)?);
    out.write_all(IDS_MAGIC).map_err(io)?;
    out.write_all(&(items.len() as u64).to_le_bytes())
        .map_err(io)?;
    for id in items {
        out.write_all(&id.to_le_bytes()).map_err(io)?;
    }
    out.flush().map_err(io)
}

fn hash_file(path: &Path) -> Result<(u64, [u8; 32]), String> {
    let mut f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, hasher.finalize().into()))
}

/// Checks every file of `manifest` against its recorded length and SHA-256.
fn verify(dir: &Path, manifest: &AnnManifest) -> Result<(), String> {
    if manifest.files.len() != SUFFIXES.len()
        || manifest
            .files
            .iter()
            .zip(SUFFIXES)
            .any(|(f, s)| f.suffix != s)
    {
        return Err("the manifest does not list the expected dump files".into());
    }
    for file in &manifest.files {
        let path = dir.join(format!("{}{}", manifest.basename, file.suffix));
        let meta = fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.len() != file.len {
            return Err(format!(
                "{} is {} bytes, the manifest says {}",
                path.display(),
                meta.len(),
                file.len
            ));
        }
        let (_, sha) = hash_file(&path)?;
        if sha != file.sha256 {
            return Err(format!("{} does not match its checksum", path.display()));
        }
    }
    Ok(())
}

fn read_ids(path: &Path, expected: u64) -> Result<Vec<u64>, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = || {
        format!(
            "{} is not an ids file of {expected} entries",
            path.display()
        )
    };
    let (magic, rest) = bytes.split_at_checked(8).ok_or_else(bad)?;
    let (count, body) = rest.split_at_checked(8).ok_or_else(bad)?;
    let count = u64::from_le_bytes(count.try_into().map_err(|_| bad())?);
    if magic != IDS_MAGIC || count != expected || body.len() as u64 != count * 8 {
        return Err(bad());
    }
    Ok(body
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

/// Loads the dump `manifest` describes, or says why not.
pub(crate) fn load(dir: &Path, manifest: &AnnManifest, dim: usize) -> Result<AnnIndex, String> {
    if manifest.dim as usize != dim {
        return Err(format!(
            "the dump has dimension {}, the vector {dim}",
            manifest.dim
        ));
    }
    // A graph built with other M / ef_construction than the configuration's is still valid:
    // it keeps its parameters until the next build (reopening with another tool must not
    // trigger a rebuild).
    if manifest.max_nb_connection as usize > MAX_NB_CONNECTION {
        return Err(format!(
            "the manifest claims M = {}",
            manifest.max_nb_connection
        ));
    }
    verify(dir, manifest)?;
    let items = read_ids(
        &dir.join(format!("{}.ids", manifest.basename)),
        manifest.points,
    )?;
    let read = |suffix: &str| {
        let path = dir.join(format!("{}{suffix}", manifest.basename));
        fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let graph = codec::decode(
        &read(".hnsw.data")?,
        &read(".hnsw.graph")?,
        manifest.points,
        dim,
    )?;
    let map = IdMap::from_items(items, manifest.catalog_version);
    let built_with = (
        manifest.max_nb_connection as usize,
        manifest.ef_construction as usize,
    );
    Ok(AnnIndex::from_parts(
        &manifest.vector,
        dim,
        built_with,
        graph,
        map,
    ))
}

/// Removes every dump file of `name` except generation `keep` (best effort; a leftover file is
/// never loaded because no manifest names it).
pub(crate) fn remove_other_generations(dir: &Path, name: &str, keep: Option<u64>) {
    let stem = basename(name, 0);
    let prefix = &stem[..stem.len() - 1]; // "<readable>-<hash>-g"
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let Some(rest) = file.strip_prefix(prefix) else {
            continue;
        };
        let generation = rest.split('.').next().and_then(|g| g.parse::<u64>().ok());
        if generation.is_some() && generation != keep {
            let _ = fs::remove_file(entry.path());
        }
    }
}
