//! The popularity ranking: live items ordered by retained interactions (desc), then id (asc).
//!
//! Updated incrementally on the commit path; a read walks the ranking from the top and skips
//! the caller's excluded items, so it costs O(k + excluded) steps. Per-item state is indexed by
//! the dense item id (see `catalog.rs`).

use std::cmp::Reverse;
use std::collections::BTreeSet;

#[derive(Debug, Default, PartialEq)]
pub(crate) struct Popularity {
    /// Retained interactions per item (live or not), slot `id`.
    counts: Vec<u64>,
    /// Whether item `id` is live, slot `id`.
    live: Vec<bool>,
    ranking: BTreeSet<(Reverse<u64>, u64)>,
}

impl Popularity {
    fn ensure(&mut self, id: u64) -> usize {
        let i = id as usize;
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
            self.live.resize(i + 1, false);
        }
        i
    }

    pub(crate) fn count(&self, id: u64) -> u64 {
        self.counts.get(id as usize).copied().unwrap_or(0)
    }

    fn is_live(&self, id: u64) -> bool {
        self.live.get(id as usize).copied().unwrap_or(false)
    }

    pub(crate) fn set_count(&mut self, id: u64, count: u64) {
        let old = self.count(id);
        if old == count {
            return;
        }
        if self.is_live(id) {
            self.ranking.remove(&(Reverse(old), id));
            self.ranking.insert((Reverse(count), id));
        }
        let i = self.ensure(id);
        self.counts[i] = count;
    }

    pub(crate) fn set_live(&mut self, id: u64, live: bool) {
        let count = self.count(id);
        let i = self.ensure(id);
        if self.live[i] == live {
            return;
        }
        self.live[i] = live;
        if live {
            self.ranking.insert((Reverse(count), id));
        } else {
            self.ranking.remove(&(Reverse(count), id));
        }
    }

    /// Live items, best first, as (id, count).
    pub(crate) fn ranked(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranking.iter().map(|(Reverse(c), id)| (*id, *c))
    }

    /// The `k` best live items not rejected by `excluded`, as (id, count).
    #[cfg(test)]
    pub(crate) fn top(&self, k: usize, excluded: impl Fn(u64) -> bool) -> Vec<(u64, u64)> {
        self.ranked()
            .filter(|(id, _)| !excluded(*id))
            .take(k)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_follows_counts_liveness_and_exclusion() {
        let mut p = Popularity::default();
        for id in 1..=4 {
            p.set_live(id, true);
        }
        p.set_count(2, 5);
        p.set_count(3, 7);
        p.set_count(4, 5);
        assert_eq!(p.top(10, |_| false), vec![(3, 7), (2, 5), (4, 5), (1, 0)]);
        assert_eq!(p.top(2, |id| id == 3), vec![(2, 5), (4, 5)]);
        p.set_live(3, false);
        assert_eq!(p.top(1, |_| false), vec![(2, 5)]);
        p.set_count(3, 9); // dead items keep their count but stay out of the ranking
        assert_eq!(p.top(1, |_| false), vec![(2, 5)]);
        p.set_live(3, true);
        assert_eq!(p.top(1, |_| false), vec![(3, 9)]);
        p.set_count(3, 0);
        assert_eq!(p.count(3), 0);
        assert_eq!(p.top(4, |_| false).last(), Some(&(3, 0)));
    }
}
