//! The bytes of a graph on disk: the vectors file and the links file of a dump.
//!
//! ```text
//! data  = [magic b"CNVANND1"][dim: u32 LE][count: u64 LE][f32 LE × count·dim]
//! graph = [magic b"CNVANNG1"][count: u64 LE][m: u32 LE][m0: u32 LE][ef_construction: u32 LE]
//!         [entry: u32 LE (u32::MAX: empty graph)][entry level: u8]
//!         [level: u8 × count]
//!         [layer 0, per node: (1 + m0) × u32 LE = link count, ids, unused slots 0]
//!         [layers ≥ 1, per node in order, per layer 1..=level: (1 + m) × u32 LE, same shape]
//! ```
//!
//! The "1" in each magic is the format version. Files are read only after their SHA-256 matched
//! the manifest; `decode` still checks every length, count, id and level, so a file this
//! database did not write cannot make it index out of bounds or loop.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

use super::graph::{Graph, Layers, MAX_LEVEL, NO_UPPER};
use super::params::MAX_NB_CONNECTION;

const DATA_MAGIC: &[u8; 8] = b"CNVANND1";
const GRAPH_MAGIC: &[u8; 8] = b"CNVANNG1";
const NO_ENTRY: u32 = u32::MAX;

/// Writes the data file of `graph`.
pub(super) fn write_data(graph: &Graph, out: &mut dyn Write) -> std::io::Result<()> {
    let layers = graph.layers.read();
    out.write_all(DATA_MAGIC)?;
    out.write_all(&(layers.dim as u32).to_le_bytes())?;
    out.write_all(&(layers.len() as u64).to_le_bytes())?;
    let mut buf = Vec::with_capacity(1 << 16);
    for chunk in layers.vectors.chunks(1 << 14) {
        buf.clear();
        buf.extend(chunk.iter().flat_map(|x| x.to_le_bytes()));
        out.write_all(&buf)?;
    }
    Ok(())
}

/// Writes the links file of `graph`.
pub(super) fn write_graph(graph: &Graph, out: &mut dyn Write) -> std::io::Result<()> {
    let layers = graph.layers.read();
    let (entry, level) = graph.entry().unwrap_or((NO_ENTRY, 0));
    out.write_all(GRAPH_MAGIC)?;
    out.write_all(&(layers.len() as u64).to_le_bytes())?;
    out.write_all(&(layers.m as u32).to_le_bytes())?;
    out.write_all(&(layers.m0 as u32).to_le_bytes())?;
    out.write_all(&(graph.ef_construction as u32).to_le_bytes())?;
    out.write_all(&entry.to_le_bytes())?;
    out.write_all(&[level as u8])?;
    out.write_all(&layers.levels)?;
    let mut put = |slots: &[AtomicU32]| -> std::io::Result<()> {
        let bytes: Vec<u8> = slots
            .iter()
            .flat_map(|s| s.load(Ordering::Acquire).to_le_bytes())
            .collect();
        out.write_all(&bytes)
    };
    for chunk in layers.links0.chunks(1 << 14) {
        put(chunk)?;
    }
    for chunk in layers.upper.chunks(1 << 14) {
        put(chunk)?;
    }
    Ok(())
}

/// A cursor over a file's bytes that fails instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let (head, rest) = self
            .bytes
            .split_at_checked(n)
            .ok_or_else(|| format!("the {} file is truncated", self.what))?;
        self.bytes = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }
    fn u32s(&mut self, n: usize) -> Result<Vec<AtomicU32>, String> {
        let len = n
            .checked_mul(4)
            .ok_or_else(|| format!("the {} file is too large", self.what))?;
        Ok(self
            .take(len)?
            .chunks_exact(4)
            .map(|b| AtomicU32::new(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect())
    }
}

/// Rebuilds a graph of `points` points of dimension `dim` from its two files, checking
/// everything the search relies on.
pub(super) fn decode(data: &[u8], graph: &[u8], points: u64, dim: usize) -> Result<Graph, String> {
    let mut d = Reader {
        bytes: data,
        what: "data",
    };
    if d.take(8)? != DATA_MAGIC {
        return Err("the data file is not a convergedb vector file, version 1".into());
    }
    let (file_dim, count) = (d.u32()? as usize, d.u64()?);
    if file_dim != dim || count != points {
        return Err(format!(
            "the data file holds {count} vectors of dimension {file_dim}, expected {points} of {dim}"
        ));
    }
    let n = usize::try_from(count).map_err(|_| "too many points".to_string())?;
    if n >= NO_ENTRY as usize {
        return Err(format!("{n} points do not fit u32 ids"));
    }
    let values = n.checked_mul(dim).and_then(|v| v.checked_mul(4));
    if values != Some(d.bytes.len()) {
        return Err("the data file's length does not match its header".into());
    }
    let vectors: Vec<f32> = d
        .bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();

    let mut g = Reader {
        bytes: graph,
        what: "graph",
    };
    if g.take(8)? != GRAPH_MAGIC {
        return Err("the graph file is not a convergedb HNSW graph, version 1".into());
    }
    if g.u64()? != count {
        return Err("the graph and data files disagree on the number of points".into());
    }
    let (m, m0, ef_c) = (g.u32()? as usize, g.u32()? as usize, g.u32()? as usize);
    if !(2..=MAX_NB_CONNECTION).contains(&m) || m0 != 2 * m {
        return Err(format!("the graph file claims M = {m}, M0 = {m0}"));
    }
    let entry = g.u32()?;
    let entry_level = usize::from(g.take(1)?[0]);
    let levels = g.take(n)?.to_vec();
    if levels.iter().any(|&l| usize::from(l) > MAX_LEVEL) {
        return Err("the graph file holds a level above the maximum".into());
    }
    let mut layers = Layers::new(dim, m);
    layers.links0 = g.u32s(n * (1 + m0))?;
    let mut upper_at = Vec::with_capacity(n);
    let mut upper_len = 0usize;
    for &l in &levels {
        if l == 0 {
            upper_at.push(NO_UPPER);
        } else {
            upper_at.push(
                u32::try_from(upper_len)
                    .ok()
                    .filter(|&a| a != NO_UPPER)
                    .ok_or("the upper layers are too large")?,
            );
            upper_len += usize::from(l) * (1 + m);
        }
    }
    layers.upper = g.u32s(upper_len)?;
    if !g.bytes.is_empty() {
        return Err("the graph file has trailing bytes".into());
    }
    layers.vectors = vectors;
    layers.levels = levels;
    layers.upper_at = upper_at;
    layers.locks = (0..n).map(|_| Mutex::new(())).collect();

    let entry = if n == 0 {
        if entry != NO_ENTRY {
            return Err("an empty graph names an entry point".into());
        }
        None
    } else {
        let top = layers.levels.iter().copied().max().map_or(0, usize::from);
        if entry as usize >= n || usize::from(layers.levels[entry as usize]) != entry_level {
            return Err("the graph file's entry point is not a node of its level".into());
        }
        if entry_level != top {
            return Err("the graph file's entry point is not on the top layer".into());
        }
        Some((entry, entry_level))
    };
    check_links(&layers)?;
    Ok(Graph::from_layers(layers, entry, ef_c))
}

/// Every list: count within its slots, ids of existing nodes on that layer, not the node itself.
fn check_links(layers: &Layers) -> Result<(), String> {
    let n = layers.len();
    for node in 0..n as u32 {
        for layer in 0..=usize::from(layers.levels[node as usize]) {
            let slots = layers.slots(node, layer);
            let count = slots
                .first()
                .map_or(0, |c| c.load(Ordering::Relaxed) as usize);
            if count >= slots.len().max(1) {
                return Err(format!("node {node} has {count} links on layer {layer}"));
            }
            for id in layers.neighbours(node, layer) {
                if id as usize >= n || id == node || usize::from(layers.levels[id as usize]) < layer
                {
                    return Err(format!("node {node} links to {id} on layer {layer}"));
                }
            }
        }
    }
    Ok(())
}

/// Fuzzing entry: `bytes` split into a data file and a links file (the first byte picks the
/// split), decoded as a dump of up to 64 points; a graph that decodes is searched. `Ok` or
/// `Err`, never a panic, never an allocation beyond the input's size.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_decode(bytes: &[u8]) {
    let Some((&first, rest)) = bytes.split_first() else {
        return;
    };
    let at = usize::from(first) * rest.len() / 256;
    let (data, graph) = rest.split_at(at);
    // The counts the manifest would give: read them from the data header when present.
    let dim = data
        .get(8..12)
        .map_or(1, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let points = data.get(12..20).map_or(0, |b| {
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    });
    if dim == 0 || dim > 64 || points > 64 {
        return;
    }
    if let Ok(g) = decode(data, graph, points, dim) {
        let q = vec![0.5f32; dim];
        let _ = g.search(&q, 3, 8, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Graph {
        let dim = 4;
        let mut data: Vec<f32> = (0..400).map(|i| ((i * 37 % 101) as f32).sin()).collect();
        data.chunks_mut(dim).for_each(|v| {
            crate::ann::distance::normalize(v);
        });
        Graph::build(dim, 4, 20, data, 1, &mut |_, _| {})
    }

    fn encode(g: &Graph) -> (Vec<u8>, Vec<u8>) {
        let (mut data, mut graph) = (Vec::new(), Vec::new());
        write_data(g, &mut data).unwrap();
        write_graph(g, &mut graph).unwrap();
        (data, graph)
    }

    #[test]
    fn a_graph_round_trips_and_answers_the_same() {
        let g = small();
        let (data, graph) = encode(&g);
        let back = decode(&data, &graph, 100, 4).unwrap();
        let q = [0.5, 0.5, 0.5, 0.5];
        assert_eq!(g.search(&q, 5, 10, None), back.search(&q, 5, 10, None));
        assert_eq!(encode(&back), (data, graph));
    }

    /// 10,000 random damages (byte overwrites, bit flips, truncations, extensions) of a real
    /// dump, decoded without the checksum gate: an error or a graph that searches without
    /// panicking, never a panic or a hang.
    #[test]
    fn ten_thousand_random_damages_never_panic() {
        use rand::{Rng, SeedableRng};
        let g = small();
        let (data, graph) = encode(&g);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let (mut refused, mut accepted) = (0, 0);
        for _ in 0..10_000 {
            let (mut d, mut l) = (data.clone(), graph.clone());
            let target = if rng.gen_bool(0.3) { &mut d } else { &mut l };
            match rng.gen_range(0..4) {
                0 => {
                    let at = rng.gen_range(0..target.len());
                    target[at] = rng.gen();
                }
                1 => {
                    let at = rng.gen_range(0..target.len());
                    target[at] ^= 1 << rng.gen_range(0..8);
                }
                2 => target.truncate(rng.gen_range(0..target.len())),
                _ => target.extend(std::iter::repeat_n(rng.gen::<u8>(), rng.gen_range(1..64))),
            }
            match decode(&d, &l, 100, 4) {
                Ok(back) => {
                    accepted += 1;
                    let _ = back.search(&[0.5, -0.5, 0.5, 0.1], 5, 10, None);
                }
                Err(_) => refused += 1,
            }
        }
        // Float bytes and unused slots decode either way; structure damage must be refused.
        assert!(
            refused > 5_000 && accepted > 0,
            "refused {refused}, accepted {accepted}"
        );
    }

    #[test]
    fn damaged_files_are_refused_not_trusted() {
        let g = small();
        let (data, graph) = encode(&g);
        assert!(decode(&data, &graph, 99, 4).is_err());
        assert!(decode(&data, &graph, 100, 5).is_err());
        assert!(decode(&data[..data.len() - 1], &graph, 100, 4).is_err());
        assert!(decode(&data, &graph[..graph.len() - 4], 100, 4).is_err());
        // Another format under the same names (as hnsw_rs dumps were): refused by its magic.
        let mut old_format = data.clone();
        old_format[..8].copy_from_slice(b"HNSWDATA");
        let err = decode(&old_format, &graph, 100, 4).err().unwrap();
        assert!(err.contains("version 1"), "{err}");
        let mut old_format = graph.clone();
        old_format[7] = b'0';
        assert!(decode(&data, &old_format, 100, 4).is_err());
        // A link to a node that does not exist.
        let mut bad = graph.clone();
        let first_link = 8 + 8 + 4 * 3 + 4 + 1 + 100 + 4;
        bad[first_link..first_link + 4].copy_from_slice(&1000u32.to_le_bytes());
        let err = decode(&data, &bad, 100, 4).err().unwrap();
        assert!(err.contains("links to 1000"), "{err}");
        // A count past the slots.
        let mut bad = graph;
        bad[first_link - 4..first_link].copy_from_slice(&9u32.to_le_bytes());
        assert!(decode(&data, &bad, 100, 4).is_err());
    }
}
