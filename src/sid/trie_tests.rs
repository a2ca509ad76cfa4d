use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

type Pairs = Vec<(Vec<u16>, u64)>;

fn pairs_of(list: &[(&[u16], u64)]) -> Pairs {
    let set: BTreeSet<(Vec<u16>, u64)> = list.iter().map(|&(c, i)| (c.to_vec(), i)).collect();
    set.into_iter().collect()
}

fn sample() -> Trie {
    let mut t = Trie::new(3);
    for (codes, item) in [
        ([1, 2, 3], 10),
        ([1, 2, 3], 7),
        ([1, 2, 4], 8),
        ([1, 5, 0], 9),
        ([4, 0, 0], 1),
    ] {
        assert!(t.insert(&codes, item));
    }
    t
}

/// Splitmix64, for deterministic pseudo-random workloads.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn new_levels_and_clamping() {
    assert_eq!(Trie::new(4).levels(), 4);
    assert_eq!(Trie::new(1).levels(), 1);
    assert_eq!(Trie::new(8).levels(), 8);
    assert_eq!(Trie::new(9).levels(), MAX_LEVELS);
    assert_eq!(Trie::new(usize::MAX).levels(), MAX_LEVELS);
    let mut eight = Trie::new(8);
    assert!(eight.insert(&[1; 8], 1));
    assert_eq!(eight.items(&[1; 8]), &[1]);
}

#[test]
fn zero_levels_holds_nothing() {
    let mut t = Trie::new(0);
    assert_eq!(t.levels(), 0);
    assert!(!t.insert(&[], 1));
    assert!(!t.insert(&[1], 1));
    assert!(!t.remove(&[], 1));
    assert!(t.allowed_next(&[]).is_empty());
    assert!(!t.allows(&[], 0));
    assert!(t.items(&[]).is_empty());
    assert!(t.items_with_prefix(&[]).is_empty());
    assert!(t.pairs().is_empty());
    assert!(t.is_empty());
    assert_eq!((t.item_count(), t.tuple_count()), (0, 0));
    assert_eq!(t, Trie::new(0));
}

#[test]
fn empty_trie_queries() {
    let t = Trie::new(4);
    assert!(t.is_empty());
    assert_eq!((t.item_count(), t.tuple_count()), (0, 0));
    assert!(t.allowed_next(&[]).is_empty());
    assert!(t.allowed_next(&[1, 2, 3]).is_empty());
    assert!(!t.allows(&[], 0));
    assert!(t.items(&[1, 2, 3, 4]).is_empty());
    assert!(t.items_with_prefix(&[]).is_empty());
    assert!(t.pairs().is_empty());
    assert!(t.heap_bytes() > 0);
}

#[test]
fn insert_and_duplicates() {
    let mut t = Trie::new(2);
    assert!(t.insert(&[3, 4], 5));
    assert!(!t.insert(&[3, 4], 5), "duplicate pair");
    assert!(t.insert(&[3, 4], 6), "second item on the same tuple");
    assert!(t.insert(&[3, 5], 5), "same item on another tuple");
    assert_eq!((t.item_count(), t.tuple_count()), (3, 2));
    assert!(!t.is_empty());
    assert_eq!(
        t.pairs(),
        pairs_of(&[(&[3, 4], 5), (&[3, 4], 6), (&[3, 5], 5)])
    );
}

#[test]
fn insert_wrong_length_changes_nothing() {
    let mut t = sample();
    let before = t.clone();
    let bytes = t.heap_bytes();
    assert!(!t.insert(&[], 1));
    assert!(!t.insert(&[1, 2], 1));
    assert!(!t.insert(&[1, 2, 3, 4], 1));
    assert_eq!(t, before);
    assert_eq!(t.heap_bytes(), bytes);
    assert_eq!(t.pairs(), before.pairs());
}

#[test]
fn extreme_values() {
    let mut t = Trie::new(2);
    assert!(t.insert(&[u16::MAX, 0], u64::MAX));
    assert!(t.insert(&[u16::MAX, u16::MAX], 0));
    assert_eq!(t.allowed_next(&[u16::MAX]), &[0, u16::MAX]);
    assert!(t.allows(&[], u16::MAX));
    assert_eq!(t.items(&[u16::MAX, 0]), &[u64::MAX]);
    assert!(t.remove(&[u16::MAX, 0], u64::MAX));
    assert_eq!(t.allowed_next(&[u16::MAX]), &[u16::MAX]);
}

#[test]
fn allowed_next_sorted_distinct_and_bounds() {
    let t = sample();
    assert_eq!(t.allowed_next(&[]), &[1, 4]);
    assert_eq!(t.allowed_next(&[1]), &[2, 5]);
    assert_eq!(t.allowed_next(&[1, 2]), &[3, 4]);
    assert_eq!(t.allowed_next(&[4, 0]), &[0]);
    assert!(t.allowed_next(&[2]).is_empty(), "unknown prefix");
    assert!(t.allowed_next(&[1, 9]).is_empty(), "unknown prefix");
    assert!(t.allowed_next(&[1, 2, 3]).is_empty(), "full tuple");
    assert!(t.allowed_next(&[1, 2, 3, 4]).is_empty(), "too long");
}

#[test]
fn allows_matches_allowed_next() {
    let t = sample();
    let prefixes: [&[u16]; 7] = [&[], &[1], &[4], &[1, 2], &[9], &[1, 2, 3], &[1, 2, 3, 4]];
    for prefix in prefixes {
        for code in 0..10 {
            assert_eq!(
                t.allows(prefix, code),
                t.allowed_next(prefix).contains(&code),
                "{prefix:?} {code}"
            );
        }
    }
    assert!(t.allows(&[1], 5));
    assert!(!t.allows(&[1], 3));
}

#[test]
fn items_sorted_with_collisions() {
    let mut t = Trie::new(4);
    for item in [50, 3, 99, 1, 42, 7] {
        assert!(t.insert(&[1, 1, 1, 1], item));
    }
    assert_eq!(t.items(&[1, 1, 1, 1]), &[1, 3, 7, 42, 50, 99]);
    assert_eq!((t.item_count(), t.tuple_count()), (6, 1));
    assert_eq!(t.allowed_next(&[1, 1, 1]), &[1]);
    assert!(t.remove(&[1, 1, 1, 1], 42));
    assert_eq!(t.items(&[1, 1, 1, 1]), &[1, 3, 7, 50, 99]);
    assert_eq!((t.item_count(), t.tuple_count()), (5, 1));
}

#[test]
fn items_unknown_or_wrong_length() {
    let t = sample();
    assert_eq!(t.items(&[1, 2, 3]), &[7, 10]);
    assert!(t.items(&[1, 2, 9]).is_empty());
    assert!(t.items(&[1, 2]).is_empty());
    assert!(t.items(&[1, 2, 3, 0]).is_empty());
    assert!(t.items(&[]).is_empty());
}

#[test]
fn any_item_under_agrees_with_items_with_prefix_and_stops_early() {
    let t = sample();
    let prefixes: [&[u16]; 8] = [
        &[],
        &[1],
        &[1, 2],
        &[1, 2, 3],
        &[1, 5],
        &[7],
        &[1, 2, 5],
        &[1, 2, 3, 0],
    ];
    for prefix in prefixes {
        let under: Vec<u64> = t.items_with_prefix(prefix).iter().map(|p| p.1).collect();
        for item in 0..12 {
            assert_eq!(
                t.any_item_under(prefix, |i| i == item),
                under.contains(&item),
                "prefix {prefix:?}, item {item}"
            );
        }
        // Visits in tuple order and stops at the first match.
        let mut seen = Vec::new();
        let found = t.any_item_under(prefix, |i| {
            seen.push(i);
            true
        });
        assert_eq!(found, !under.is_empty(), "{prefix:?}");
        assert_eq!(seen, under.iter().take(1).copied().collect::<Vec<_>>());
    }
}

#[test]
fn items_with_prefix_every_length() {
    let t = sample();
    let all = t.pairs();
    assert_eq!(t.items_with_prefix(&[]), all);
    assert_eq!(
        t.items_with_prefix(&[1]),
        pairs_of(&[
            (&[1, 2, 3], 7),
            (&[1, 2, 3], 10),
            (&[1, 2, 4], 8),
            (&[1, 5, 0], 9)
        ])
    );
    assert_eq!(
        t.items_with_prefix(&[1, 2]),
        pairs_of(&[(&[1, 2, 3], 7), (&[1, 2, 3], 10), (&[1, 2, 4], 8)])
    );
    assert_eq!(
        t.items_with_prefix(&[1, 2, 3]),
        pairs_of(&[(&[1, 2, 3], 7), (&[1, 2, 3], 10)])
    );
    assert!(t.items_with_prefix(&[1, 2, 3, 0]).is_empty(), "too long");
    assert!(t.items_with_prefix(&[7]).is_empty(), "unknown");
    assert!(t.items_with_prefix(&[1, 2, 5]).is_empty(), "unknown tuple");
}

#[test]
fn pairs_ordered_by_tuple_then_item() {
    let t = sample();
    let expected = pairs_of(&[
        (&[1, 2, 3], 7),
        (&[1, 2, 3], 10),
        (&[1, 2, 4], 8),
        (&[1, 5, 0], 9),
        (&[4, 0, 0], 1),
    ]);
    assert_eq!(t.pairs(), expected);
    assert_eq!((t.item_count(), t.tuple_count()), (5, 4));
}

#[test]
fn remove_absent_pairs() {
    let mut t = sample();
    let before = t.clone();
    assert!(!t.remove(&[1, 2, 3], 8), "absent item on a present tuple");
    assert!(!t.remove(&[1, 2, 9], 7), "absent tuple");
    assert!(!t.remove(&[9, 9, 9], 7), "absent branch");
    assert!(!t.remove(&[1, 2], 7), "short");
    assert!(!t.remove(&[1, 2, 3, 4], 7), "long");
    assert!(!Trie::new(3).remove(&[1, 2, 3], 7), "empty trie");
    assert_eq!(t, before);
}

#[test]
fn remove_prunes_branches() {
    let mut t = sample();
    assert!(t.remove(&[1, 2, 4], 8));
    assert_eq!(t.allowed_next(&[1, 2]), &[3]);
    assert!(!t.allows(&[1, 2], 4));
    assert!(t.remove(&[1, 2, 3], 7));
    assert_eq!(t.allowed_next(&[1, 2]), &[3], "one item left on the tuple");
    assert!(t.remove(&[1, 2, 3], 10));
    assert!(t.allowed_next(&[1, 2]).is_empty());
    assert_eq!(t.allowed_next(&[1]), &[5], "branch 1,2 pruned");
    assert!(t.remove(&[1, 5, 0], 9));
    assert_eq!(t.allowed_next(&[]), &[4], "branch 1 pruned");
    assert!(t.allowed_next(&[1]).is_empty());
    assert!(t.remove(&[4, 0, 0], 1));
    assert!(t.is_empty());
    assert!(t.allowed_next(&[]).is_empty());
    assert_eq!(t, Trie::new(3));
    assert!(!t.remove(&[4, 0, 0], 1), "second removal");
    assert!(t.insert(&[4, 0, 0], 1), "reinsert after emptying");
    assert_eq!(t.pairs(), pairs_of(&[(&[4, 0, 0], 1)]));
}

#[test]
fn counts_track_changes() {
    let mut t = Trie::new(2);
    t.insert(&[0, 0], 1);
    t.insert(&[0, 0], 2);
    t.insert(&[0, 1], 1);
    assert_eq!((t.item_count(), t.tuple_count()), (3, 2));
    t.remove(&[0, 0], 1);
    assert_eq!((t.item_count(), t.tuple_count()), (2, 2));
    t.remove(&[0, 0], 2);
    assert_eq!((t.item_count(), t.tuple_count()), (1, 1));
}

#[test]
fn equality_ignores_order_and_layout() {
    let a = sample();
    let mut b = Trie::new(3);
    for (codes, item) in a.pairs().into_iter().rev() {
        b.insert(&codes, item);
    }
    assert_eq!(a, b);
    // Churn leaves a different layout (free lists) but the same content.
    let mut c = sample();
    for i in 0..50u64 {
        c.insert(&[(i % 7) as u16, (i % 3) as u16, (i % 5) as u16], 100 + i);
    }
    for i in 0..50u64 {
        c.remove(&[(i % 7) as u16, (i % 3) as u16, (i % 5) as u16], 100 + i);
    }
    assert_eq!(a, c);
    let mut d = a.clone();
    d.insert(&[0, 0, 0], 0);
    assert_ne!(a, d);
    d.remove(&[0, 0, 0], 0);
    d.remove(&[1, 2, 3], 7);
    d.insert(&[1, 2, 3], 6);
    assert_ne!(a, d, "same counts and tuples, different item");
    assert_ne!(Trie::new(2), Trie::new(3));
}

#[test]
fn clone_is_independent() {
    let a = sample();
    let mut b = a.clone();
    b.remove(&[4, 0, 0], 1);
    assert_eq!(a.items(&[4, 0, 0]), &[1]);
    assert!(b.items(&[4, 0, 0]).is_empty());
}

#[test]
fn wide_nodes_up_to_every_code() {
    let mut t = Trie::new(2);
    for code in 0..=u16::MAX {
        assert!(t.insert(&[code, code], u64::from(code)));
    }
    let all: Vec<u16> = (0..=u16::MAX).collect();
    assert_eq!(t.allowed_next(&[]), all.as_slice());
    assert!(t.allows(&[], u16::MAX));
    assert_eq!(t.allowed_next(&[77]), &[77]);
    for code in (0..=u16::MAX).step_by(2) {
        assert!(t.remove(&[code, code], u64::from(code)));
    }
    let odd: Vec<u16> = (0..=u16::MAX).filter(|c| c % 2 == 1).collect();
    assert_eq!(t.allowed_next(&[]), odd.as_slice());
    assert_eq!(t.tuple_count(), odd.len());
}

#[test]
fn heap_bytes_grows_and_is_released() {
    let empty = Trie::new(4).heap_bytes();
    let mut t = Trie::new(4);
    let mut rng = 1;
    let mut keys = Vec::new();
    for item in 0..20_000u64 {
        let r = next(&mut rng);
        let codes = [
            r as u8 as u16,
            (r >> 8) as u8 as u16,
            (r >> 16) as u8 as u16,
            (r >> 24) as u8 as u16,
        ];
        if t.insert(&codes, item) {
            keys.push((codes, item));
        }
    }
    let full = t.heap_bytes();
    assert!(full > empty);
    assert!(
        full / t.item_count() < 64,
        "{} bytes per item",
        full / t.item_count()
    );
    let reference = t.pairs();
    let mut shrunk = t.clone();
    shrunk.shrink_to_fit();
    assert_eq!(shrunk, t);
    assert!(shrunk.heap_bytes() <= full);
    // Remove 95%: automatic compaction must keep memory proportional to content.
    for (codes, item) in &keys[..19_000] {
        assert!(t.remove(codes, *item));
    }
    assert_eq!(t.item_count(), 1000);
    assert!(t.heap_bytes() < full / 4, "{} of {}", t.heap_bytes(), full);
    let expected: BTreeSet<_> = keys[19_000..]
        .iter()
        .map(|(c, i)| (c.to_vec(), *i))
        .collect();
    assert_eq!(t.pairs(), expected.into_iter().collect::<Vec<_>>());
    for (codes, item) in &keys[19_000..] {
        assert!(t.remove(codes, *item));
    }
    assert!(t.is_empty());
    assert_eq!(t.heap_bytes(), empty);
    assert_eq!(reference.len(), 20_000);
}

/// Brute-force answers computed from the reference set.
fn check(trie: &Trie, reference: &BTreeSet<(Vec<u16>, u64)>, levels: usize, codes: u16) {
    let expected: Pairs = reference.iter().cloned().collect();
    assert_eq!(trie.pairs(), expected);
    assert_eq!(trie.item_count(), reference.len());
    let tuples: BTreeSet<&Vec<u16>> = reference.iter().map(|(t, _)| t).collect();
    assert_eq!(trie.tuple_count(), tuples.len());
    assert_eq!(trie.is_empty(), reference.is_empty());
    // No slot leaks: live slots are exactly what a compact copy needs.
    assert_eq!(
        trie.arena.live_slots(),
        trie.compacted().arena.slots(),
        "leaked slots"
    );

    let mut next: BTreeMap<Vec<u16>, BTreeSet<u16>> = BTreeMap::new();
    let mut items: BTreeMap<Vec<u16>, Vec<u64>> = BTreeMap::new();
    for (tuple, item) in reference {
        for len in 0..levels {
            next.entry(tuple[..len].to_vec())
                .or_default()
                .insert(tuple[len]);
        }
        items.entry(tuple.clone()).or_default().push(*item);
    }
    // Every prefix of length 0..=levels over the code range (one past it for unknown codes).
    let mut frontier: Vec<Vec<u16>> = vec![Vec::new()];
    for len in 0..=levels {
        for prefix in &frontier {
            let want: Vec<u16> = next
                .get(prefix)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            assert_eq!(
                trie.allowed_next(prefix),
                want.as_slice(),
                "allowed_next({prefix:?})"
            );
            for code in 0..=codes {
                assert_eq!(
                    trie.allows(prefix, code),
                    want.contains(&code),
                    "allows({prefix:?}, {code})"
                );
            }
            let want_items = if len == levels {
                items.get(prefix).cloned().unwrap_or_default()
            } else {
                Vec::new()
            };
            assert_eq!(
                trie.items(prefix),
                want_items.as_slice(),
                "items({prefix:?})"
            );
            // items_with_prefix: brute force for short prefixes, items() for full tuples.
            let want: Pairs = if len == levels {
                want_items.iter().map(|&i| (prefix.clone(), i)).collect()
            } else if len <= 2 {
                reference
                    .iter()
                    .filter(|(t, _)| t.starts_with(prefix))
                    .cloned()
                    .collect()
            } else {
                continue;
            };
            assert_eq!(
                trie.items_with_prefix(prefix),
                want,
                "items_with_prefix({prefix:?})"
            );
        }
        if len < levels {
            frontier = frontier
                .iter()
                .flat_map(|p| {
                    (0..=codes).map(move |c| {
                        let mut q = p.clone();
                        q.push(c);
                        q
                    })
                })
                .collect();
        }
    }
    let mut rebuilt = Trie::new(levels);
    for (tuple, item) in reference {
        assert!(rebuilt.insert(tuple, *item));
    }
    assert_eq!(&rebuilt, trie);
    assert_eq!(trie, &rebuilt);
}

#[derive(Clone, Debug)]
enum Op {
    Insert(Vec<u16>, u64),
    Remove(Vec<u16>, u64),
    Shrink,
}

fn ops(levels: usize, codes: u16, items: u64, max: usize) -> impl Strategy<Value = Vec<Op>> {
    let tuple = prop_oneof![
        12 => prop::collection::vec(0..codes, levels),
        1 => prop::collection::vec(0..codes, 0..=levels + 1),
    ];
    let op = prop_oneof![
        10 => (tuple.clone(), 0..items).prop_map(|(t, i)| Op::Insert(t, i)),
        8 => (tuple, 0..items).prop_map(|(t, i)| Op::Remove(t, i)),
        1 => Just(Op::Shrink),
    ];
    prop::collection::vec(op, 1..max)
}

fn apply(trie: &mut Trie, reference: &mut BTreeSet<(Vec<u16>, u64)>, op: &Op) {
    match op {
        Op::Insert(tuple, item) => {
            let valid = tuple.len() == trie.levels();
            let fresh = valid && reference.insert((tuple.clone(), *item));
            assert_eq!(trie.insert(tuple, *item), fresh, "insert {tuple:?} {item}");
        }
        Op::Remove(tuple, item) => {
            let present = reference.remove(&(tuple.clone(), *item));
            assert_eq!(
                trie.remove(tuple, *item),
                present,
                "remove {tuple:?} {item}"
            );
        }
        Op::Shrink => {
            let before = trie.clone();
            trie.shrink_to_fit();
            assert_eq!(*trie, before);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn matches_reference_set(
        (levels, ops) in (1usize..=4).prop_flat_map(|l| (Just(l), ops(l, 6, 20, 80)))
    ) {
        let mut trie = Trie::new(levels);
        let mut reference = BTreeSet::new();
        for op in &ops {
            apply(&mut trie, &mut reference, op);
            check(&trie, &reference, levels, 6);
        }
    }

    /// Wide nodes: blocks grow and shrink across every capacity class (1..4, 8, ... 1024).
    #[test]
    fn wide_nodes_match_reference(
        ops in prop::collection::vec((any::<bool>(), 0u16..3, 0u16..700, 0u64..2), 1..2500),
        seed in any::<u64>(),
    ) {
        let mut trie = Trie::new(2);
        let mut reference = BTreeSet::new();
        let check_wide = |trie: &Trie, reference: &BTreeSet<(Vec<u16>, u64)>| {
            let roots: BTreeSet<u16> = reference.iter().map(|(t, _)| t[0]).collect();
            let roots: Vec<u16> = roots.into_iter().collect();
            assert_eq!(trie.allowed_next(&[]), roots.as_slice());
            for &root in &roots {
                let want: BTreeSet<u16> = reference.iter().filter(|(t, _)| t[0] == root).map(|(t, _)| t[1]).collect();
                let want: Vec<u16> = want.into_iter().collect();
                assert_eq!(trie.allowed_next(&[root]), want.as_slice());
            }
            assert_eq!(trie.item_count(), reference.len());
        };
        for (k, &(insert, a, b, item)) in ops.iter().enumerate() {
            let op = if insert { Op::Insert(vec![a, b], item) } else { Op::Remove(vec![a, b], item) };
            apply(&mut trie, &mut reference, &op);
            if k % 97 == 0 {
                check_wide(&trie, &reference);
            }
        }
        check_wide(&trie, &reference);
        prop_assert_eq!(trie.arena.live_slots(), trie.compacted().arena.slots());
        let mut rebuilt = Trie::new(2);
        for (tuple, item) in &reference {
            rebuilt.insert(tuple, *item);
        }
        prop_assert_eq!(&rebuilt, &trie);
        // Drain in pseudo-random order, crossing every class downwards.
        let mut rest: Vec<(Vec<u16>, u64)> = reference.iter().cloned().collect();
        let mut rng = seed;
        while !rest.is_empty() {
            let k = (next(&mut rng) % rest.len() as u64) as usize;
            let (tuple, item) = rest.swap_remove(k);
            prop_assert!(trie.remove(&tuple, item));
            reference.remove(&(tuple, item));
            if rest.len().is_multiple_of(53) {
                check_wide(&trie, &reference);
            }
        }
        prop_assert!(trie.is_empty());
        prop_assert_eq!(trie, Trie::new(2));
    }
}

/// The memory target: under 64 heap bytes per item for 10k and 100k random
/// tuples of 4 levels x 256 codes, built incrementally.
#[test]
fn memory_target_random_tuples() {
    for n in [10_000u64, 100_000] {
        let mut rng = 42;
        let mut t = Trie::new(4);
        for item in 0..n {
            let r = next(&mut rng);
            assert!(t.insert(&[0, 8, 16, 24].map(|s| ((r >> s) & 0xFF) as u16), item));
        }
        let per_item = t.heap_bytes() / t.item_count();
        assert!(per_item < 64, "{n} items: {per_item} bytes per item");
        // No arena is left mostly free after a pure insert workload.
        assert!(
            t.arena.free_slots * 10 < t.arena.slots(),
            "{n} items: free {}",
            t.arena.free_slots
        );
    }
}

/// Long insert/remove churn with phases of growth and shrinkage, so automatic
/// compaction and free-block reuse run many times; checked against a reference set.
#[test]
fn long_churn_with_automatic_compaction() {
    let mut trie = Trie::new(3);
    let mut reference = BTreeSet::new();
    let mut rng = 99;
    let mut compactions = 0;
    for step in 0..120_000u32 {
        let r = next(&mut rng);
        let codes: Vec<u16> = [0, 8, 16].iter().map(|s| ((r >> s) % 24) as u16).collect();
        let item = (r >> 32) % 4;
        // Phases: mostly inserts for 20k steps, then mostly removes.
        let insert = (r >> 40) % 10 < if (step / 20_000) % 2 == 0 { 8 } else { 2 };
        let before = trie.arena.free_slots;
        if insert {
            assert_eq!(trie.insert(&codes, item), reference.insert((codes, item)));
        } else {
            assert_eq!(trie.remove(&codes, item), reference.remove(&(codes, item)));
        }
        compactions += usize::from(before > COMPACT_MIN_FREE && trie.arena.free_slots == 0);
        if step % 10_000 == 0 {
            assert_eq!(trie.pairs(), reference.iter().cloned().collect::<Pairs>());
            assert_eq!(trie.arena.live_slots(), trie.compacted().arena.slots());
        }
    }
    assert!(compactions > 0, "automatic compaction never ran");
    assert_eq!(trie.pairs(), reference.iter().cloned().collect::<Pairs>());
    let mut rebuilt = Trie::new(3);
    for (tuple, item) in &reference {
        rebuilt.insert(tuple, *item);
    }
    assert_eq!(rebuilt, trie);
}
