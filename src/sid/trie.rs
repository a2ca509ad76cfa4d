//! In-memory trie of semantic IDs for constrained beam search.
//!
//! Every live item has a code tuple of exactly `levels` codes (`u16` each).
//! Several items may share one tuple (1:N collisions are legal); the trie holds
//! the set of `(tuple, item)` pairs and answers the question beam search asks at
//! every step: which codes may follow this prefix ([`Trie::allowed_next`],
//! [`Trie::allows`]).
//!
//! # Layout
//!
//! One arena of parallel columns (`codes: u16`, `vals: u64`, `spilled: bool`)
//! holds everything; slot 0 is the root. A node's children are a contiguous
//! *block* of slots with sorted codes, so `allowed_next` borrows a `&[u16]` and
//! `allows` is a binary search. An inner node's value is its children block
//! packed as `(start, len)`; a leaf's value is its item id when the tuple has one
//! item (the common case), else (`spilled`) a packed block of slots holding the
//! ids, ascending. A node costs 11 bytes and no allocation of its own, which
//! matters because the deep levels are mostly single-child chains.
//!
//! A block of `len` entries takes `len` slots up to 4, then the next power of
//! two, so most inserts and removes are shifts in place. A full block moves;
//! freed blocks go to free lists by size and are reused (a larger one is split
//! when needed). When over a third of the arena is free the trie is rebuilt
//! compactly, so memory stays bounded under any interleaving of inserts and
//! removes. Equality compares content, never layout.

use std::collections::BTreeMap;
use std::mem::size_of;
use std::ops::Range;

use super::MAX_LEVELS;

/// The arena never grows past this many slots, so every index fits in a `u32`.
const MAX_SLOTS: usize = 1 << 30;

/// Free slots the arena may hold before it is considered for compaction.
const COMPACT_MIN_FREE: usize = 1024;

/// Packs a block `(start, len)` into a node value; both fit in `u32` (see `MAX_SLOTS`).
fn pack(start: usize, len: usize) -> u64 {
    (start as u64 & 0xFFFF_FFFF) | ((len as u64) << 32)
}

/// The block `(start, len)` packed in a node value.
fn unpack(val: u64) -> (usize, usize) {
    ((val & 0xFFFF_FFFF) as usize, (val >> 32) as usize)
}

fn range((start, len): (usize, usize)) -> Range<usize> {
    start..start.saturating_add(len)
}

/// Slots reserved for a block of `len` entries: exact up to 4, then a power of two.
fn block_cap(len: usize) -> usize {
    match len {
        0..=4 => len,
        _ => len.next_power_of_two(),
    }
}

/// Grows `v` to `need` default elements; capacity grows by 1/8 to keep slack small.
fn grow<T: Copy + Default>(v: &mut Vec<T>, need: usize) {
    if need > v.capacity() {
        let target = need.max(v.capacity() + v.capacity() / 8 + 8);
        v.reserve_exact(target - v.len());
    }
    v.resize(need.max(v.len()), T::default());
}

/// `copy_within` that does nothing instead of panicking on a bad range.
fn shift<T: Copy>(v: &mut [T], src: Range<usize>, dst: usize) {
    let n = src.end.saturating_sub(src.start);
    if src.start <= src.end && src.end <= v.len() && dst.saturating_add(n) <= v.len() {
        v.copy_within(src, dst);
    }
}

fn put<T>(v: &mut [T], at: usize, x: T) {
    if let Some(slot) = v.get_mut(at) {
        *slot = x;
    }
}

/// Parallel columns indexed by slot, carved into blocks, with free lists.
#[derive(Clone, Debug, Default)]
struct Arena {
    codes: Vec<u16>,
    vals: Vec<u64>,
    spilled: Vec<bool>,
    /// Start slots of free blocks, by block size.
    free: BTreeMap<usize, Vec<u32>>,
    free_slots: usize,
}

/// What one slot holds: a code, a value and the spilled flag.
type Entry = (u16, u64, bool);

impl Arena {
    fn slots(&self) -> usize {
        self.codes.len()
    }

    fn live_slots(&self) -> usize {
        self.slots().saturating_sub(self.free_slots)
    }

    fn reserve_exact(&mut self, n: usize) {
        self.codes.reserve_exact(n);
        self.vals.reserve_exact(n);
        self.spilled.reserve_exact(n);
    }

    fn put_free(&mut self, start: usize, cap: usize) {
        if cap > 0 {
            self.free.entry(cap).or_default().push(start as u32);
            self.free_slots += cap;
        }
    }

    /// A block of `cap` slots: a free one, a split larger free one, or new slots at the end.
    fn alloc(&mut self, cap: usize) -> usize {
        let mut free = self.free.range_mut(cap.max(1)..);
        let Some((size, start)) = free.find_map(|(&size, l)| Some((size, l.pop()? as usize)))
        else {
            let start = self.slots();
            let need = start.saturating_add(cap);
            grow(&mut self.codes, need);
            grow(&mut self.vals, need);
            grow(&mut self.spilled, need);
            return start;
        };
        self.free_slots -= size;
        let (mut at, mut rest) = (start + cap, size.saturating_sub(cap));
        while rest > 0 {
            let piece = 1 << rest.ilog2();
            self.put_free(at, piece);
            at += piece;
            rest -= piece;
        }
        start
    }

    fn copy(&mut self, src: Range<usize>, dst: usize) {
        shift(&mut self.codes, src.clone(), dst);
        shift(&mut self.vals, src.clone(), dst);
        shift(&mut self.spilled, src, dst);
    }

    fn set(&mut self, at: usize, (code, val, spilled): Entry) {
        put(&mut self.codes, at, code);
        put(&mut self.vals, at, val);
        put(&mut self.spilled, at, spilled);
    }

    /// Inserts `e` at `pos` of the block `(start, len)`, moving the block if it is full;
    /// returns the new block, packed.
    fn insert(&mut self, (start, len): (usize, usize), pos: usize, e: Entry) -> u64 {
        let pos = pos.min(len);
        let cap = block_cap(len);
        let at = if len > 0 && block_cap(len + 1) == cap {
            self.copy(start + pos..start + len, start + pos + 1);
            start
        } else {
            let to = self.alloc(block_cap(len + 1));
            self.copy(start..start + pos, to);
            self.copy(start + pos..start + len, to + pos + 1);
            self.put_free(start, cap);
            to
        };
        self.set(at + pos, e);
        pack(at, len + 1)
    }

    /// Removes the entry at `pos` of the block `(start, len)`, freeing the slots it no
    /// longer needs; returns the new block, packed (length 0 when it was the last entry).
    fn remove(&mut self, (start, len): (usize, usize), pos: usize) -> u64 {
        if pos >= len {
            return pack(start, len);
        }
        if len == 1 {
            self.put_free(start, 1);
            return 0;
        }
        self.copy(start + pos + 1..start + len, start + pos);
        let (old, new) = (block_cap(len), block_cap(len - 1));
        // The tail left over is itself a valid capacity (1, 4 or a power of two).
        self.put_free(start + new, old - new);
        pack(start, len - 1)
    }

    fn heap_bytes(&self) -> usize {
        self.codes.capacity() * size_of::<u16>()
            + self.vals.capacity() * size_of::<u64>()
            + self.spilled.capacity() * size_of::<bool>()
            + self.free.len() * (size_of::<usize>() + size_of::<Vec<u32>>())
            + self.free.values().map(|l| l.capacity() * 4).sum::<usize>()
    }
}

/// Set of `(code tuple, item id)` pairs, organised as a trie over the codes.
#[derive(Clone, Debug)]
pub struct Trie {
    levels: usize,
    arena: Arena,
    item_count: usize,
    tuple_count: usize,
}

impl Trie {
    /// An empty trie for tuples of `levels` codes. `levels` above [`MAX_LEVELS`]
    /// is clamped to it; a trie with 0 levels holds nothing (every insert fails).
    pub fn new(levels: usize) -> Trie {
        let mut arena = Arena::default();
        arena.reserve_exact(1);
        arena.alloc(1); // the root, slot 0
        Trie {
            levels: levels.min(MAX_LEVELS),
            arena,
            item_count: 0,
            tuple_count: 0,
        }
    }

    /// Number of codes in every tuple.
    #[allow(dead_code)] // used by constrained decoding and tests
    pub fn levels(&self) -> usize {
        self.levels
    }

    fn val(&self, idx: usize) -> u64 {
        self.arena.vals.get(idx).copied().unwrap_or(0)
    }

    fn set_val(&mut self, idx: usize, val: u64, spilled: bool) {
        put(&mut self.arena.vals, idx, val);
        put(&mut self.arena.spilled, idx, spilled);
    }

    /// Children block of the inner node at `idx`.
    fn block(&self, idx: usize) -> (usize, usize) {
        unpack(self.val(idx))
    }

    fn spilled(&self, idx: usize) -> bool {
        self.arena.spilled.get(idx).copied().unwrap_or(false)
    }

    fn codes_in(&self, block: (usize, usize)) -> &[u16] {
        self.arena.codes.get(range(block)).unwrap_or(&[])
    }

    /// Items of the leaf at `idx`.
    fn leaf_items(&self, idx: usize) -> &[u64] {
        let vals = &self.arena.vals;
        if self.spilled(idx) {
            vals.get(range(self.block(idx))).unwrap_or(&[])
        } else {
            vals.get(idx).map(std::slice::from_ref).unwrap_or(&[])
        }
    }

    /// Slot of the node reached by `prefix`, if present.
    fn locate(&self, prefix: &[u16]) -> Option<usize> {
        if prefix.len() > self.levels {
            return None;
        }
        let mut idx = 0;
        for code in prefix {
            let block = self.block(idx);
            idx = block.0 + self.codes_in(block).binary_search(code).ok()?;
        }
        Some(idx)
    }

    /// Adds `item` under the tuple `codes`; returns false (and changes nothing)
    /// if `codes.len() != levels` or the pair is already present.
    pub fn insert(&mut self, codes: &[u16], item: u64) -> bool {
        let full = self.arena.slots() >= MAX_SLOTS;
        if self.levels == 0 || codes.len() != self.levels || full {
            return false;
        }
        let mut idx = 0;
        for (depth, &code) in codes.iter().enumerate() {
            let block = self.block(idx);
            match self.codes_in(block).binary_search(&code) {
                Ok(pos) => idx = block.0 + pos,
                Err(pos) => {
                    // New path: a chain of single-child nodes down to a leaf holding `item`.
                    let mut val = item;
                    for &c in codes.get(depth + 1..).unwrap_or(&[]).iter().rev() {
                        let at = self.arena.alloc(1);
                        self.arena.set(at, (c, val, false));
                        val = pack(at, 1);
                    }
                    let block = self.arena.insert(block, pos, (code, val, false));
                    self.set_val(idx, block, false);
                    self.tuple_count += 1;
                    return self.inserted();
                }
            }
        }
        if self.spilled(idx) {
            let Err(pos) = self.leaf_items(idx).binary_search(&item) else {
                return false;
            };
            let block = self.arena.insert(self.block(idx), pos, (0, item, false));
            self.set_val(idx, block, true);
        } else {
            let old = self.val(idx);
            if old == item {
                return false;
            }
            let at = self.arena.alloc(2);
            self.arena.set(at, (0, old.min(item), false));
            self.arena.set(at + 1, (0, old.max(item), false));
            self.set_val(idx, pack(at, 2), true);
        }
        self.inserted()
    }

    fn inserted(&mut self) -> bool {
        self.item_count += 1;
        self.maybe_compact();
        true
    }

    /// Removes the pair, pruning nodes left without items; returns whether it was present.
    pub fn remove(&mut self, codes: &[u16], item: u64) -> bool {
        let levels = self.levels;
        if levels == 0 || codes.len() != levels {
            return false;
        }
        // idx[d]: slot of the path's node at depth d; pos[d]: its place in its parent's block.
        let mut idx = [0usize; MAX_LEVELS + 1];
        let mut pos = [0usize; MAX_LEVELS + 1];
        for (depth, code) in codes.iter().enumerate() {
            let block = self.block(idx[depth]);
            let Ok(p) = self.codes_in(block).binary_search(code) else {
                return false;
            };
            pos[depth + 1] = p;
            idx[depth + 1] = block.0 + p;
        }
        let leaf = idx[levels];
        if self.spilled(leaf) {
            let Ok(p) = self.leaf_items(leaf).binary_search(&item) else {
                return false;
            };
            let (start, len) = unpack(self.arena.remove(self.block(leaf), p));
            if len == 1 {
                // Back to a single item held in the leaf itself.
                self.set_val(leaf, self.val(start), false);
                self.arena.put_free(start, 1);
            } else {
                self.set_val(leaf, pack(start, len), true);
            }
        } else if self.val(leaf) == item {
            self.tuple_count -= 1;
            // Remove the leaf, then every ancestor left without children.
            for depth in (1..=levels).rev() {
                let parent = idx[depth - 1];
                let block = self.arena.remove(self.block(parent), pos[depth]);
                self.set_val(parent, block, false);
                if block != 0 {
                    break;
                }
            }
        } else {
            return false;
        }
        self.item_count -= 1;
        if self.item_count == 0 {
            *self = Trie::new(levels);
        } else {
            self.maybe_compact();
        }
        true
    }

    /// Codes that may follow `prefix` (`prefix.len() < levels`), ascending and
    /// distinct; empty for an unknown prefix or `prefix.len() >= levels`.
    pub fn allowed_next(&self, prefix: &[u16]) -> &[u16] {
        if prefix.len() >= self.levels {
            return &[];
        }
        self.locate(prefix)
            .map_or(&[], |idx| self.codes_in(self.block(idx)))
    }

    /// Whether `code` may follow `prefix`: `allowed_next(prefix).contains(&code)`
    /// by binary search.
    #[allow(dead_code)] // used by constrained decoding and tests
    pub fn allows(&self, prefix: &[u16], code: u16) -> bool {
        self.allowed_next(prefix).binary_search(&code).is_ok()
    }

    /// Items under the full tuple `codes`, ascending; empty if none or wrong length.
    pub fn items(&self, codes: &[u16]) -> &[u64] {
        if self.levels == 0 || codes.len() != self.levels {
            return &[];
        }
        self.locate(codes).map_or(&[], |idx| self.leaf_items(idx))
    }

    /// All pairs whose tuple starts with `prefix` (any length `0..=levels`),
    /// ordered by tuple then item id.
    pub fn items_with_prefix(&self, prefix: &[u16]) -> Vec<(Vec<u16>, u64)> {
        let mut out = Vec::new();
        if let Some(idx) = self.locate(prefix).filter(|_| !self.is_empty()) {
            self.collect(idx, &mut prefix.to_vec(), &mut out);
        }
        out
    }

    /// Whether some item under `prefix` (any length `0..=levels`) satisfies `f`: items are
    /// visited in tuple order and the walk stops at the first that does; false for an unknown
    /// prefix. Constrained search asks it to skip a prefix all of whose items are excluded.
    pub fn any_item_under(&self, prefix: &[u16], mut f: impl FnMut(u64) -> bool) -> bool {
        match self.locate(prefix).filter(|_| !self.is_empty()) {
            Some(idx) => self.any_below(idx, prefix.len(), &mut f),
            None => false,
        }
    }

    fn any_below(&self, idx: usize, depth: usize, f: &mut dyn FnMut(u64) -> bool) -> bool {
        if depth >= self.levels {
            return self.leaf_items(idx).iter().any(|&i| f(i));
        }
        let block = self.block(idx);
        (0..self.codes_in(block).len()).any(|k| self.any_below(block.0 + k, depth + 1, f))
    }

    /// Appends the pairs below the node `idx`, reached by `path`.
    fn collect(&self, idx: usize, path: &mut Vec<u16>, out: &mut Vec<(Vec<u16>, u64)>) {
        if path.len() >= self.levels {
            return out.extend(self.leaf_items(idx).iter().map(|&i| (path.clone(), i)));
        }
        let block = self.block(idx);
        for (k, &code) in self.codes_in(block).iter().enumerate() {
            path.push(code);
            self.collect(block.0 + k, path, out);
            path.pop();
        }
    }

    /// Number of `(tuple, item)` pairs.
    pub fn item_count(&self) -> usize {
        self.item_count
    }

    /// Number of distinct tuples.
    pub fn tuple_count(&self) -> usize {
        self.tuple_count
    }

    /// Whether the trie holds no pair.
    pub fn is_empty(&self) -> bool {
        self.item_count == 0
    }

    /// Every `(tuple, item)` pair, ordered by tuple then item.
    pub fn pairs(&self) -> Vec<(Vec<u16>, u64)> {
        self.items_with_prefix(&[])
    }

    /// Approximate heap bytes: the capacity of every allocation times its element size.
    pub fn heap_bytes(&self) -> usize {
        self.arena.heap_bytes()
    }

    /// Rebuilds the arena without free slots and releases spare capacity. Content
    /// is unchanged; the rebuild (without the release) also happens automatically
    /// when more than a third of the arena is free.
    #[allow(dead_code)] // used by constrained decoding and tests
    pub fn shrink_to_fit(&mut self) {
        *self = self.compacted();
        self.arena.codes.shrink_to_fit();
        self.arena.vals.shrink_to_fit();
        self.arena.spilled.shrink_to_fit();
    }

    fn maybe_compact(&mut self) {
        let free = self.arena.free_slots;
        if free > COMPACT_MIN_FREE && free * 2 > self.arena.live_slots() {
            *self = self.compacted();
        }
    }

    fn compacted(&self) -> Trie {
        let mut t = Trie::new(self.levels);
        t.arena
            .reserve_exact(self.arena.live_slots().saturating_sub(1));
        let (root, _) = t.copy_node(self, 0, 0);
        t.set_val(0, root, false);
        t.item_count = self.item_count;
        t.tuple_count = self.tuple_count;
        t
    }

    /// Copies what hangs below the node `idx` (at `depth`) of `src`, a spilled leaf's
    /// items being its children at `levels + 1`; returns the node's new value and flag.
    fn copy_node(&mut self, src: &Trie, depth: usize, idx: usize) -> (u64, bool) {
        let spilled = src.spilled(idx);
        let block = src.block(idx);
        if depth > self.levels || (depth == self.levels && !spilled) || block.1 == 0 {
            return (src.val(idx), false);
        }
        let start = self.arena.alloc(block_cap(block.1));
        for k in 0..block.1 {
            let code = src.arena.codes.get(block.0 + k).copied().unwrap_or(0);
            let (val, flag) = self.copy_node(src, depth + 1, block.0 + k);
            self.arena.set(start + k, (code, val, flag));
        }
        (pack(start, block.1), spilled)
    }

    /// Content equality of the node `a` of `self` and the node `b` of `other`, at `depth`.
    fn same_node(&self, other: &Trie, depth: usize, a: usize, b: usize) -> bool {
        if depth >= self.levels {
            return self.leaf_items(a) == other.leaf_items(b);
        }
        let (ba, bb) = (self.block(a), other.block(b));
        let codes = self.codes_in(ba);
        codes == other.codes_in(bb)
            && (0..codes.len()).all(|k| self.same_node(other, depth + 1, ba.0 + k, bb.0 + k))
    }
}

impl PartialEq for Trie {
    /// Same levels and same set of pairs, whatever the insertion order or arena layout.
    fn eq(&self, other: &Trie) -> bool {
        self.levels == other.levels
            && self.item_count == other.item_count
            && self.tuple_count == other.tuple_count
            && (self.is_empty() || self.same_node(other, 0, 0, 0))
    }
}

impl Eq for Trie {}

#[cfg(test)]
#[path = "trie_tests.rs"]
mod tests;
