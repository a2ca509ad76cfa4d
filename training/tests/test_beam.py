"""Goal: the vectorised constrained beam search follows the contract's rule exactly.
Method: a hand-made trie and a deterministic scorer (logits depend only on the last token);
expected beams are computed by hand and by a plain per-beam reference implementation."""
import itertools
import math

import numpy as np

from convergedb_train.serve_ref import Bundle, Trie, count_under, log_softmax64

FIRST, L, C, V = 3, 2, 3, 3 + 2 * 3  # vocab: 3 text tokens, then <a_0..2>, <b_0..2>


def table(seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(V, V)).astype(np.float32)


class FakeScorer:
    """logits of a position = table[last token]; works with and without a KV cache."""

    def __init__(self, t):
        self.t = t

    def run(self, ids, mask, past=None):
        return self.t[ids[:, -1]], [np.zeros((ids.shape[0], 1, 0, 1), np.float32)]


def make(tuples_to_items, t):
    b = Bundle.__new__(Bundle)
    b.L, b.C, b.first, b.pad = L, C, FIRST, 0
    b.by_tuple = tuples_to_items
    b.trie = Trie(list(tuples_to_items), C)
    b.scorer = FakeScorer(t)
    b.rerank = None  # a format-1/2 bundle: no hybrid re-rank
    b.codes = {k: list(tp) for tp, ks in tuples_to_items.items() for k in ks}
    b.under = count_under(tuples_to_items, L, C)
    return b


def reference(prompt_last, t, tuples, width):
    lp = lambda tok: log_softmax64(t[tok][None])[0]
    beams = [((), 0.0, prompt_last)]
    for l in range(L):
        cand = []
        for pre, s, last in beams:
            for c in range(C):
                if any(tp[:l + 1] == pre + (c,) for tp in tuples):
                    cand.append((pre + (c,), s + lp(last)[FIRST + l * C + c], FIRST + l * C + c))
        cand.sort(key=lambda x: (-x[1], x[0]))
        beams = cand[:width]
    return [(p, s) for p, s, _ in beams]


def test_hand_made_case():
    # logits: after the prompt token 1, <a_1> is best; after <a_1>, <b_2> > <b_0>
    t = np.zeros((V, V), np.float32)
    t[1, FIRST + 1] = 2.0
    t[1, FIRST + 0] = 1.0
    t[FIRST + 1, FIRST + C + 2] = 3.0
    t[FIRST + 0, FIRST + C + 0] = 1.0
    tuples = {(0, 0): ["x", "x2"], (1, 0): ["y"], (1, 2): ["w"], (2, 1): ["v"]}
    b = make(tuples, t)
    got = b.beam_search([[2, 1]], beam_width=2)[0]
    # (0, 0) beats (1, 0): 1 lower at level 0, but row <a_0> has log-sum-exp log(e + 8) = 2.37
    # against log(e^3 + 8) = 3.34 for row <a_1>
    assert [g[0] for g in got] == [(1, 2), (0, 0)]
    # exact scores: first step log_softmax of row 1 at <a_1>, then row <a_1> at <b_2> / <b_0>
    r1 = log_softmax64(t[1][None])[0]
    assert math.isclose(got[0][1], r1[FIRST + 1] + 3 - math.log(math.exp(3) + 8), abs_tol=1e-12)
    assert math.isclose(got[1][1], r1[FIRST + 0] + 1 - math.log(math.exp(1) + 8), abs_tol=1e-12)
    # collision expansion in item order, history excluded, k distinct
    b.recommend = Bundle.recommend.__get__(b)
    b.prompt_ids = lambda h: [2, 1]
    assert [k for k, _ in b.recommend([[]], k=3, beam_width=2)[0]] == ["w", "x", "x2"]
    assert [k for k, _ in b.recommend([["x"]], k=3, beam_width=2)[0]] == ["w", "x2"]
    # A history covering every item under the best first code <a_1> (y, w): a 1-wide beam does
    # not spend itself there (level 0 skips the prefix), so it still answers.
    assert [k for k, _ in b.recommend([["y", "w"]], k=1, beam_width=1)[0]] == ["x"]


def test_ties_prefer_smaller_tuple():
    t = np.zeros((V, V), np.float32)  # every score equal
    tuples = {tp: [str(tp)] for tp in itertools.product(range(C), range(C))}
    got = make(tuples, t).beam_search([[1]], beam_width=4)[0]
    assert [g[0] for g in got] == [(0, 0), (0, 1), (0, 2), (1, 0)]


def test_matches_reference_on_random_scorers_batched_and_without_cache():
    rng = np.random.default_rng(1)
    for seed in range(20):
        t = table(seed)
        tuples = {tuple(int(x) for x in rng.integers(0, C, L)): ["i"] for _ in range(5)}
        b = make(tuples, t)
        prompts = [[1], [0, 2], [2, 2, 1]]
        for width in (1, 2, 3, 20):
            for kv in (True, False):
                got = b.beam_search(prompts, width, kv)
                for p, g in zip(prompts, got):
                    exp = reference(p[-1], t, list(tuples), width)
                    assert [x[0] for x in g] == [x[0] for x in exp]
                    assert np.allclose([x[1] for x in g], [x[1] for x in exp], atol=1e-12)


class FakeSessions:
    """Format 2's two graphs with logits = table[last token]: prefill sees the prompt's last
    token, decode the row's new token; padded rows get whatever the pad token gives."""

    def __init__(self, t):
        self.t = t

    def _out(self, last):
        x = self.t[last].astype(np.float64)
        m = x.max(-1)
        lse = (m + np.log(np.exp(x - m[:, None]).sum(-1))).astype(np.float32)
        return self.t[last][:, FIRST:FIRST + L * C], lse

    def prefill(self, ids, mask):
        idl, lse = self._out(ids[:, -1])
        return idl, lse, [np.zeros((ids.shape[0], 1, ids.shape[1], 1), np.float32)]

    def decode(self, tokens, pos, prefix_mask, prefix, past):
        assert tokens.shape[0] % prefix_mask.shape[0] == 0 and prefix[0].shape[0] == prefix_mask.shape[0]
        idl, lse = self._out(tokens[:, 0])
        S = past[0].shape[2]
        return idl, lse, [np.zeros((tokens.shape[0], 1, S + 1, 1), np.float32)]


def test_shared_prefix_and_per_beam_decoders_match_format_1():
    rng = np.random.default_rng(2)
    for seed in range(20):
        t = table(seed)
        tuples = {tuple(int(x) for x in rng.integers(0, C, L)): ["i"] for _ in range(5)}
        v1 = make(tuples, t)
        v2 = make(tuples, t)
        v2.format, v2.sessions = 2, FakeSessions(t)
        prompts = [[1], [0, 2], [2, 2, 1], [1, 1]]
        for width in (1, 2, 3, 20):
            want = v1.beam_search(prompts, width, True)
            for strategy in ("shared_prefix", "per_beam"):
                v2.strategy = strategy
                got = v2.beam_search(prompts, width, True)
                assert [[x[0] for x in g] for g in got] == [[x[0] for x in w] for w in want]
                for g, w in zip(got, want):
                    assert np.allclose([x[1] for x in g], [x[1] for x in w], atol=1e-5)
