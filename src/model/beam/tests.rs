//! Beam search against a deterministic scorer on hand-made tries.

use super::*;

const LAYOUT: TokenLayout = TokenLayout {
    first_token_id: 10,
    codes: 4,
};
const VOCAB: usize = 10 + 3 * 4 + 2;

/// Logit of `token` after `seq`: a fixed pseudo-random function of both (FNV-1a), in [-4, 4).
fn hashed_logit(seq: &[i64], token: usize) -> f32 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &t in seq.iter().chain(std::iter::once(&(token as i64))) {
        for b in t.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    ((h >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
}

/// Keeps each row's full sequence; logits come from a function of the sequence.
struct FnScorer<F: Fn(&[i64], usize) -> f32> {
    rows: Vec<Vec<i64>>,
    logit: F,
    calls: usize,
}

impl<F: Fn(&[i64], usize) -> f32> FnScorer<F> {
    fn new(logit: F) -> Self {
        FnScorer {
            rows: Vec::new(),
            logit,
            calls: 0,
        }
    }
    fn fill(&self, out: &mut Logits) {
        out.rows = self.rows.len();
        out.width = VOCAB;
        out.data.clear();
        for seq in &self.rows {
            out.data.extend((0..VOCAB).map(|t| (self.logit)(seq, t)));
        }
    }
}

impl<F: Fn(&[i64], usize) -> f32> StepScorer for FnScorer<F> {
    fn prefill(&mut self, prompts: &[Vec<i64>], out: &mut Logits) -> Result<()> {
        self.calls += 1;
        self.rows = prompts.to_vec();
        self.fill(out);
        Ok(())
    }
    fn extend(&mut self, parents: &[usize], tokens: &[i64], out: &mut Logits) -> Result<()> {
        self.calls += 1;
        self.rows = parents
            .iter()
            .zip(tokens)
            .map(|(&p, &t)| {
                let mut s = self.rows[p].clone();
                s.push(t);
                s
            })
            .collect();
        self.fill(out);
        Ok(())
    }
}

fn trie(pairs: &[([u16; 3], u64)]) -> Trie {
    let mut t = Trie::new(3);
    for (codes, item) in pairs {
        assert!(t.insert(codes, *item));
    }
    t
}

/// Exact score of a whole tuple: the sum of full-vocabulary log-softmax terms.
fn brute_score(logit: &dyn Fn(&[i64], usize) -> f32, prompt: &[i64], codes: &[u16]) -> f64 {
    let mut seq = prompt.to_vec();
    let mut score = 0.0;
    for (level, &c) in codes.iter().enumerate() {
        let row: Vec<f32> = (0..VOCAB).map(|t| logit(&seq, t)).collect();
        let tok = LAYOUT.token(level, c);
        score += f64::from(row[tok]) - log_sum_exp(&row);
        seq.push(tok as i64);
    }
    score
}

fn sample_trie() -> Trie {
    trie(&[
        ([0, 0, 0], 1),
        ([0, 0, 1], 2),
        ([0, 2, 3], 3),
        ([1, 1, 1], 4),
        ([1, 1, 1], 9), // a collision: two items share a tuple
        ([1, 3, 0], 5),
        ([2, 0, 2], 6),
        ([3, 3, 3], 7),
        ([3, 3, 2], 8),
    ])
}

#[test]
fn wide_beam_equals_exhaustive_ranking() {
    let t = sample_trie();
    let prompt = vec![1, 2, 3];
    let mut scorer = FnScorer::new(hashed_logit);
    let req = Request {
        prompt: prompt.clone(),
        exclude: &[],
        k: 100,
    };
    let got = search(&mut scorer, &t, LAYOUT, Widths::uniform(16), &[req]).unwrap();
    // Exhaustive: every tuple scored in full, best first (ties: smaller tuple first).
    let mut all: Vec<(Vec<u16>, f64)> = t
        .pairs()
        .into_iter()
        .map(|(codes, _)| codes)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|c| {
            let s = brute_score(&hashed_logit, &prompt, &c);
            (c, s)
        })
        .collect();
    all.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
    assert_eq!(got[0].beams.len(), all.len());
    for ((gc, gs), (ec, es)) in got[0].beams.iter().zip(&all) {
        assert_eq!(gc, ec);
        assert!((gs - es).abs() < 1e-9, "{gs} vs {es}");
    }
    // Items follow the tuples, collisions in ascending item id.
    let expected_items: Vec<u64> = all.iter().flat_map(|(c, _)| t.items(c).to_vec()).collect();
    let got_items: Vec<u64> = got[0].items.iter().map(|&(i, _)| i).collect();
    assert_eq!(got_items, expected_items);
    // One prefill and one extend per level but the last.
    assert_eq!(scorer.calls, 3);
}

/// A scorer that makes greedy decoding wrong: level 0 prefers code 0, but every tuple under 0
/// is then bad; under code 1 there is a great continuation.
fn trap_logit(seq: &[i64], token: usize) -> f32 {
    let last = seq.last().copied().unwrap_or(-1);
    let a0 = LAYOUT.token(0, 0) as i64;
    let a1 = LAYOUT.token(0, 1) as i64;
    match (last, token) {
        (3, t) if t == a0 as usize => 2.0,
        (3, t) if t == a1 as usize => 1.5,
        (l, t) if l == a0 && t == LAYOUT.token(1, 0) => -6.0,
        (l, t) if l == a1 && t == LAYOUT.token(1, 1) => 6.0,
        _ => 0.0,
    }
}

#[test]
fn narrow_beam_prunes_and_wide_beam_recovers() {
    let t = trie(&[([0, 0, 0], 1), ([1, 1, 1], 2)]);
    let run = |width| {
        let mut scorer = FnScorer::new(trap_logit);
        let req = Request {
            prompt: vec![3],
            exclude: &[],
            k: 1,
        };
        search(&mut scorer, &t, LAYOUT, Widths::uniform(width), &[req]).unwrap()
    };
    // Width 1 is greedy: code 0 first, stuck under it.
    assert_eq!(run(1)[0].beams[0].0, vec![0, 0, 0]);
    assert_eq!(run(1)[0].items, vec![(1, run(1)[0].beams[0].1)]);
    // Width 2 keeps code 1 alive and finds the better tuple.
    let wide = run(2);
    assert_eq!(wide[0].beams[0].0, vec![1, 1, 1]);
    assert_eq!(wide[0].items[0].0, 2);
    assert!(wide[0].beams[0].1 > wide[0].beams[1].1);
}

#[test]
fn only_live_tuples_are_generated() {
    // Level-0 logits favour code 3, which no live tuple starts with.
    let t = trie(&[([0, 1, 2], 1), ([2, 1, 0], 2)]);
    let logit = |_: &[i64], tok: usize| if tok == LAYOUT.token(0, 3) { 50.0 } else { 0.0 };
    let mut scorer = FnScorer::new(logit);
    let req = Request {
        prompt: vec![1],
        exclude: &[],
        k: 10,
    };
    let got = search(&mut scorer, &t, LAYOUT, Widths::uniform(20), &[req]).unwrap();
    let tuples: Vec<Vec<u16>> = got[0].beams.iter().map(|b| b.0.clone()).collect();
    assert_eq!(tuples, vec![vec![0, 1, 2], vec![2, 1, 0]]); // equal scores: smaller tuple first
    assert_eq!(
        got[0].items.iter().map(|i| i.0).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[test]
fn exclusion_and_collisions_fill_k_distinct_items() {
    let t = sample_trie();
    let mut scorer = FnScorer::new(hashed_logit);
    let all = search(
        &mut scorer,
        &t,
        LAYOUT,
        Widths::uniform(16),
        &[Request {
            prompt: vec![7],
            exclude: &[],
            k: 100,
        }],
    )
    .unwrap();
    let order: Vec<u64> = all[0].items.iter().map(|i| i.0).collect();
    let exclude = {
        let mut e = vec![order[0], 9];
        e.sort_unstable();
        e
    };
    let got = search(
        &mut scorer,
        &t,
        LAYOUT,
        Widths::uniform(16),
        &[Request {
            prompt: vec![7],
            exclude: &exclude,
            k: 3,
        }],
    )
    .unwrap();
    let expected: Vec<u64> = order
        .iter()
        .copied()
        .filter(|i| !exclude.contains(i))
        .take(3)
        .collect();
    assert_eq!(
        got[0].items.iter().map(|i| i.0).collect::<Vec<_>>(),
        expected
    );
}

#[test]
fn a_batch_equals_its_requests_run_alone() {
    let t = sample_trie();
    let prompts = [vec![1, 2], vec![5], vec![9, 9, 9, 9]];
    let alone: Vec<Answer> = prompts
        .iter()
        .map(|p| {
            let mut s = FnScorer::new(hashed_logit);
            let req = Request {
                prompt: p.clone(),
                exclude: &[],
                k: 4,
            };
            search(&mut s, &t, LAYOUT, Widths::uniform(3), &[req])
                .unwrap()
                .remove(0)
        })
        .collect();
    let mut s = FnScorer::new(hashed_logit);
    let reqs: Vec<Request> = prompts
        .iter()
        .map(|p| Request {
            prompt: p.clone(),
            exclude: &[],
            k: 4,
        })
        .collect();
    let batch = search(&mut s, &t, LAYOUT, Widths::uniform(3), &reqs).unwrap();
    assert_eq!(batch, alone);
    assert_eq!(s.calls, 3, "the batch shares its scorer calls");
}

#[test]
fn an_empty_trie_answers_nothing_without_running_the_model() {
    let t = Trie::new(3);
    let mut s = FnScorer::new(hashed_logit);
    let req = Request {
        prompt: vec![1],
        exclude: &[],
        k: 5,
    };
    let got = search(&mut s, &t, LAYOUT, Widths::uniform(4), &[req]).unwrap();
    assert!(got[0].items.is_empty());
    assert_eq!(s.calls, 0);
}

#[test]
fn fully_excluded_tuples_do_not_take_the_last_beams() {
    let t = sample_trie();
    let mut scorer = FnScorer::new(hashed_logit);
    let request = |exclude: &'static [u64], k| Request {
        prompt: vec![7],
        exclude,
        k,
    };
    // The unconstrained order of every finished tuple with a wide beam.
    let all = search(
        &mut scorer,
        &t,
        LAYOUT,
        Widths::uniform(64),
        &[request(&[], 100)],
    )
    .unwrap();
    let order: Vec<u64> = all[0].items.iter().map(|i| i.0).collect();
    // Exclude the items of the two best tuples; a beam of 2 must still return 2 other items.
    let mut ex: Vec<u64> = all[0].beams[..2]
        .iter()
        .flat_map(|(codes, _)| t.items(codes).to_vec())
        .collect();
    ex.sort_unstable();
    let ex: &'static [u64] = Box::leak(ex.into_boxed_slice());
    let got = search(
        &mut scorer,
        &t,
        LAYOUT,
        Widths::uniform(2),
        &[request(ex, 2)],
    )
    .unwrap();
    let items: Vec<u64> = got[0].items.iter().map(|i| i.0).collect();
    // No finished beam is a tuple whose items are all excluded, so the beams yield items.
    for (codes, _) in &got[0].beams {
        assert!(
            !t.items(codes).iter().all(|i| ex.contains(i)),
            "beam {codes:?} holds only excluded items"
        );
    }
    assert!(!items.is_empty() && items.len() <= 2, "{items:?}");
    assert!(items.iter().all(|i| !ex.contains(i) && order.contains(i)));
    // Without exclusion the same 2-wide search ends on the excluded tuples' items.
    let plain = search(
        &mut scorer,
        &t,
        LAYOUT,
        Widths::uniform(2),
        &[request(&[], 2)],
    )
    .unwrap();
    assert!(plain[0].items.iter().any(|i| ex.contains(&i.0)));
}

#[test]
fn fully_excluded_prefixes_do_not_take_beams_at_any_level() {
    let t = sample_trie();
    let mut scorer = FnScorer::new(hashed_logit);
    let run = |scorer: &mut FnScorer<_>, exclude: &[u64], width: usize| {
        search(
            scorer,
            &t,
            LAYOUT,
            Widths::uniform(width),
            &[Request {
                prompt: vec![3],
                exclude,
                k: 2,
            }],
        )
        .unwrap()
        .remove(0)
    };
    // The two first-level codes the 2-wide search keeps without exclusion.
    let plain = run(&mut scorer, &[], 2);
    let mut first: Vec<u16> = plain.beams.iter().map(|(c, _)| c[0]).collect();
    first.dedup();
    // Exclude every item under those first codes (a heavy user's history covering them): a
    // 2-wide search must go on to the other subtrees and still fill k = 2.
    let mut ex: Vec<u64> = first
        .iter()
        .flat_map(|&c| t.items_with_prefix(&[c]))
        .map(|(_, i)| i)
        .collect();
    ex.sort_unstable();
    let got = run(&mut scorer, &ex, 2);
    let items: Vec<u64> = got.items.iter().map(|i| i.0).collect();
    assert_eq!(items.len(), 2, "{items:?} (excluded {ex:?})");
    assert!(items.iter().all(|i| !ex.contains(i)), "{items:?}");
    for (codes, _) in &got.beams {
        assert!(
            !first.contains(&codes[0]),
            "beam {codes:?} under an excluded prefix"
        );
    }
}

/// Wraps a full-vocabulary scorer and returns only the ID tokens' columns plus each row's
/// log-sum-exp, as format-2 graphs do.
struct SlicedScorer<S: StepScorer>(S);

impl<S: StepScorer> SlicedScorer<S> {
    fn slice(out: &mut Logits) {
        let first = LAYOUT.first_token_id as usize;
        let count = 3 * LAYOUT.codes;
        let mut data = Vec::with_capacity(out.rows * count);
        let mut lse = Vec::with_capacity(out.rows);
        for r in 0..out.rows {
            let row = out.row(r);
            data.extend_from_slice(&row[first..first + count]);
            lse.push(log_sum_exp(row) as f32);
        }
        out.width = count;
        out.first = first;
        out.data = data;
        out.lse = lse;
    }
}

impl<S: StepScorer> StepScorer for SlicedScorer<S> {
    fn prefill(&mut self, prompts: &[Vec<i64>], out: &mut Logits) -> Result<()> {
        self.0.prefill(prompts, out)?;
        Self::slice(out);
        Ok(())
    }
    fn extend(&mut self, parents: &[usize], tokens: &[i64], out: &mut Logits) -> Result<()> {
        self.0.extend(parents, tokens, out)?;
        Self::slice(out);
        Ok(())
    }
}

#[test]
fn id_token_slices_with_a_given_log_sum_exp_give_the_same_search() {
    let t = sample_trie();
    let reqs = || {
        vec![
            Request {
                prompt: vec![1, 2, 3],
                exclude: &[],
                k: 5,
            },
            Request {
                prompt: vec![4],
                exclude: &[2, 6],
                k: 3,
            },
        ]
    };
    for width in [1, 2, 4, 16] {
        let full = search(
            &mut FnScorer::new(hashed_logit),
            &t,
            LAYOUT,
            Widths::uniform(width),
            &reqs(),
        )
        .unwrap();
        let sliced = search(
            &mut SlicedScorer(FnScorer::new(hashed_logit)),
            &t,
            LAYOUT,
            Widths::uniform(width),
            &reqs(),
        )
        .unwrap();
        assert_eq!(full.len(), sliced.len());
        assert!(!full[0].items.is_empty());
        for (a, b) in full.iter().zip(&sliced) {
            let keys = |x: &Answer| x.items.iter().map(|i| i.0).collect::<Vec<_>>();
            assert_eq!(keys(a), keys(b), "width {width}");
            assert_eq!(a.beams.len(), b.beams.len());
            for (x, y) in a.items.iter().zip(&b.items) {
                assert!((x.1 - y.1).abs() < 1e-5, "{} vs {}", x.1, y.1);
            }
        }
    }
}

/// A wider last level (the re-rank's candidates) keeps the same beams before it: its finished
/// tuples start with the uniform search's, in the same order and scores, then add more.
#[test]
fn a_wider_last_level_extends_the_uniform_answer() {
    // three level-2 prefixes with four leaves each: the two kept prefixes hold 8 tuples
    let mut tuples = Vec::new();
    for p in 0..3u16 {
        for leaf in 0..4u16 {
            tuples.push(([p, p, leaf], u64::from(p * 4 + leaf + 1)));
        }
    }
    let t = trie(&tuples);
    let req = || Request {
        prompt: vec![7],
        exclude: &[],
        k: 100,
    };
    let mut scorer = FnScorer::new(hashed_logit);
    let narrow = search(&mut scorer, &t, LAYOUT, Widths::uniform(2), &[req()]).unwrap();
    let wide = search(
        &mut scorer,
        &t,
        LAYOUT,
        Widths { beam: 2, last: 6 },
        &[req()],
    )
    .unwrap();
    let (n, w) = (&narrow[0].beams, &wide[0].beams);
    assert_eq!(n.len(), 2);
    assert_eq!(w.len(), 6, "{w:?}");
    assert_eq!(&w[..n.len()], &n[..]);
    // the extra tuples extend only the two level-2 prefixes the beam kept
    let mut prefixes: Vec<&[u16]> = w.iter().map(|(c, _)| &c[..2]).collect();
    prefixes.sort();
    prefixes.dedup();
    assert_eq!(prefixes.len(), 2, "{w:?}");
}
