"""Reference serving of a model bundle: onnxruntime + tokenizers, prompt rendering and
trie-constrained batched beam search exactly as docs/model-bundle.md specifies.

    python -m convergedb_train.serve_ref BUNDLE_DIR [--users N] [--batches 1,16,64]
        [--threads T] [--strategy shared_prefix|per_beam] [--modes kv,nokv]

times users/s at each batch size with and without the KV cache (the baseline the Rust
implementation is compared against). Format-1 bundles decode with a KV cache per beam; format-2
bundles with one prompt cache per user (`--strategy per_beam` copies it per beam instead)."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def log_softmax64(x):
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


class Trie:
    """Per level l, children[l][node] -> [C] child node ids (-1 = no such prefix)."""

    def __init__(self, tuples, C):
        L = len(tuples[0])
        self.L, self.C = L, C
        self.children = []
        level_nodes = {(): 0}
        for l in range(L):
            nxt = {}
            for t in sorted(set(tuples)):
                p = tuple(t[:l + 1])
                if p not in nxt:
                    nxt[p] = len(nxt)
            ch = np.full((len(level_nodes), C), -1, np.int64)
            for p, nid in nxt.items():
                ch[level_nodes[p[:-1]], p[-1]] = nid
            self.children.append(ch)
            level_nodes = nxt
        self.leaf_tuple = {nid: p for p, nid in level_nodes.items()}


class Scorer:
    """The model behind a narrow seam: prefill(ids, mask) and step(token, rows)."""

    def __init__(self, path, graph, threads=0):
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.nl, self.H, self.hd = graph["num_layers"], graph["num_heads"], graph["head_dim"]
        self.past_names = []
        for i in range(self.nl):
            self.past_names += [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]

    def run(self, ids, mask, past=None):
        B = ids.shape[0]
        pos = np.maximum(np.cumsum(mask, 1) - 1, 0)[:, -ids.shape[1]:]
        feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": pos}
        if past is None:
            past = [np.zeros((B, self.H, 0, self.hd), np.float32)] * (2 * self.nl)
        feeds.update(zip(self.past_names, past))
        out = self.sess.run(None, feeds)
        return out[0][:, -1], out[1:]


class PerBeamDecoder:
    """Format 1: one graph; every beam row carries its own copy of the prompt's KV cache (or,
    without the cache, the whole sequence is run again at every level)."""

    def __init__(self, scorer, first, n, kv_cache=True):
        self.s, self.first, self.n, self.kv = scorer, first, n, kv_cache

    def start(self, ids, mask):
        self.mask, self.seq = mask, ids
        logits, self.past = self.s.run(ids, mask)
        return log_softmax64(logits)[:, self.first:self.first + self.n]

    def step(self, r, tok, users):
        self.mask = np.concatenate([self.mask[r], np.ones((len(r), 1), np.int64)], 1)
        if self.kv:
            logits, self.past = self.s.run(tok, self.mask, [p[r] for p in self.past])
        else:
            self.seq = np.concatenate([self.seq[r], tok], 1)
            logits, _ = self.s.run(self.seq, self.mask)
        return log_softmax64(logits)[:, self.first:self.first + self.n]


class SharedPrefixDecoder:
    """Format 2 (docs/model-bundle.md): the prompt is prefilled once per user; a decoding step
    runs the rows of every user padded to W rows each (R = B * W), attending to the user's one
    copy of the prompt cache plus the row's own decoded tokens.

    strategy "shared_prefix": as specified; "per_beam": every row gets its own copy of its
    user's prompt cache (W = 1, B = rows), the cost model of format 1, kept as a baseline;
    "no_cache": the prefill graph runs every row's whole sequence again at every level."""

    def __init__(self, sessions, first, n, pad_token, strategy="shared_prefix"):
        if strategy not in ("shared_prefix", "per_beam", "no_cache"):
            raise ValueError(f"unknown strategy {strategy!r}")
        self.s, self.first, self.n, self.pad_token, self.strategy = sessions, first, n, pad_token, strategy

    def _lp(self, idl, lse):
        return idl.astype(np.float64) - lse.astype(np.float64)[:, None]

    def start(self, ids, mask):
        idl, lse, self.prefix = self.s.prefill(ids, mask)
        self.pmask, self.seq, self.mask = mask, ids, mask
        self.lens = mask.sum(1)
        self.steps = 0
        self.slot = np.arange(ids.shape[0])  # logical row -> row of the last decode's output
        self.past = None
        return self._lp(idl, lse)

    def step(self, r, tok, users):
        R = len(r)
        if self.strategy == "no_cache":
            self.seq = np.concatenate([self.seq[r], tok], 1)
            self.mask = np.concatenate([self.mask[r], np.ones((R, 1), np.int64)], 1)
            idl, lse, _ = self.s.prefill(self.seq, self.mask)
            return self._lp(idl, lse)
        B = self.pmask.shape[0]
        nl2 = len(self.prefix)
        if self.strategy == "per_beam":
            W, slot = 1, np.arange(R)
            pmask, prefix = self.pmask[users], [p[users] for p in self.prefix]
        else:
            counts = np.bincount(users, minlength=B)
            W = max(int(counts.max()), 1)
            first_of_user = np.searchsorted(users, users, side="left")
            slot = users * W + (np.arange(R) - first_of_user)
            pmask, prefix = self.pmask, self.prefix
        rows = (B if self.strategy == "shared_prefix" else R) * W
        toks = np.full((rows, 1), self.pad_token, np.int64)
        toks[slot] = tok
        owner = users if self.strategy == "per_beam" else np.repeat(np.arange(B), W)
        pos = (self.lens[owner] + self.steps)[:, None].astype(np.int64)
        if self.past is None:
            H, hd = self.prefix[0].shape[1], self.prefix[0].shape[3]
            past = [np.zeros((rows, H, 0, hd), np.float32) for _ in range(nl2)]
        else:
            past = []
            for p in self.past:
                q = np.zeros((rows,) + p.shape[1:], np.float32)
                q[slot] = p[self.slot[r]]
                past.append(q)
        idl, lse, self.past = self.s.decode(toks, pos, pmask, prefix, past)
        self.slot = slot
        self.steps += 1
        return self._lp(idl[slot], lse[slot])


def count_under(by_tuple, levels, codes):
    """Per level, items under every prefix (prefixes as integers, as in beam_search)."""
    under = [dict() for _ in range(levels)]
    for tup, keys in by_tuple.items():
        n = 0
        for l, c in enumerate(tup):
            n = n * codes + c
            under[l][n] = under[l].get(n, 0) + len(keys)
    return under


class Bundle:
    def __init__(self, folder, threads=0, verify=True):
        self.dir = folder
        with open(os.path.join(folder, "manifest.json")) as f:
            self.manifest = m = json.load(f)
        if verify:
            for name, h in m["sha256"].items():
                with open(os.path.join(folder, name), "rb") as f:
                    if hashlib.sha256(f.read()).hexdigest() != h:
                        raise ValueError(f"{name}: sha256 does not match the manifest")
        files = m["files"]
        self.tok = Tokenizer.from_file(os.path.join(folder, files["tokenizer"]))
        with open(os.path.join(folder, files["tokenization"])) as f:
            self.tokenization = json.load(f)
        self.L, self.C = m["sid"]["levels"], m["sid"]["codes"]
        self.first = m["sid"]["first_token_id"]
        self.bos, self.pad = m["special_tokens"]["bos"], m["special_tokens"]["pad"]
        self.template = m["prompt"]["templates"][m["prompt"]["serving_template"]]
        self.sep, self.max_history = m["prompt"]["item_separator"], m["prompt"]["max_history"]
        # item order = ascending item id = the order of items.jsonl (the database imports it in order)
        order = []
        self.rerank = m.get("rerank")
        if (m["format_version"] == 3) != bool(self.rerank):
            raise ValueError("a format_version 3 manifest has a rerank block, other versions have none")
        vectors = {}
        if files.get("items") and os.path.exists(os.path.join(folder, files["items"])):
            with open(os.path.join(folder, files["items"])) as f:
                for line in f:
                    if line.strip():
                        o = json.loads(line)
                        order.append(o["key"])
                        if self.rerank and self.rerank["vector"] in o.get("vectors", {}):
                            vectors[o["key"]] = np.asarray(o["vectors"][self.rerank["vector"]], np.float32)
        if self.rerank:
            from .dense import DenseScorer
            self.dense = DenseScorer(os.path.join(folder, files["user"]), self.rerank["max_history"], threads)
            self.vector_of = vectors
        codes = self.tokenization["items"]
        rank = {k: i for i, k in enumerate(order)}
        self.codes = codes
        by_tuple = {}
        for k in sorted(codes, key=lambda k: (rank.get(k, len(rank)), k)):
            by_tuple.setdefault(tuple(codes[k]), []).append(k)
        self.by_tuple = by_tuple
        self.trie = Trie(list(by_tuple), self.C)
        self.under = count_under(by_tuple, self.L, self.C)
        self.format = m["format_version"]
        self.strategy = "shared_prefix"
        if self.format == 1:
            self.scorer = Scorer(os.path.join(folder, files["onnx"]), m["graph"], threads)
        elif self.format in (2, 3):  # 3 = 2 + the hybrid re-rank
            from .export import SharedPrefixSessions
            self.sessions = SharedPrefixSessions(os.path.join(folder, files["onnx"]),
                                                 os.path.join(folder, files["decode"]),
                                                 m["graph"]["num_layers"], threads)
        else:
            raise ValueError(f"format_version {self.format} is not supported")

    def decoder(self, kv_cache=True):
        """The decoding strategy of this bundle's format (format 2: `self.strategy`)."""
        n = self.L * self.C
        if getattr(self, "format", 1) == 1:
            return PerBeamDecoder(self.scorer, self.first, n, kv_cache)
        strategy = self.strategy if kv_cache else "no_cache"
        return SharedPrefixDecoder(self.sessions, self.first, n, self.first, strategy)

    def render(self, history):
        h = [k for k in history if k in self.codes][-self.max_history:]
        s = self.sep.join("".join(f"<{chr(97 + l)}_{c}>" for l, c in enumerate(self.codes[k])) for k in h)
        return self.template.replace("{history}", s)

    def prompt_ids(self, history):
        return [self.bos] + self.tok.encode(self.render(history), add_special_tokens=False).ids

    def recommend(self, histories, k=10, beam_width=20, exclude_history=True, kv_cache=True, rerank=True):
        """Batched: one result list [(item key, score)] per history. With the manifest's
        `rerank` (and `rerank`), the beam's last level keeps max(beam_width, rerank.candidates)
        tuples, their first max(k, rerank.candidates) items are re-scored (dense.py) and the best
        k returned."""
        fuse = bool(rerank and self.rerank)
        n = max(k, self.rerank["candidates"]) if fuse else k
        # without the re-rank the last level keeps beam_width tuples, as every level (Rust: Widths)
        out = self.candidates(histories, n, beam_width, exclude_history, kv_cache,
                              None if fuse else beam_width)
        if fuse:
            out = [self.fuse(h, res)[:k] for h, res in zip(histories, out)]
        return out

    def candidates(self, histories, n, beam_width=20, exclude_history=True, kv_cache=True, final_width=None):
        """The beam's first n items per history [(item key, LM score)]: the last level keeps
        `final_width` (default max(beam_width, n)) tuples; a tuple's items in item order,
        excluded items skipped."""
        exes = [set(h) if exclude_history else set() for h in histories]
        beams = self.beam_search([self.prompt_ids(h) for h in histories], beam_width, kv_cache,
                                 [self.excluded_prefixes(ex) for ex in exes],
                                 final_width=final_width or max(beam_width, n))
        out = []
        for u in range(len(histories)):
            ex = exes[u]
            res, seen = [], set()
            for tup, score in beams[u]:
                for key in self.by_tuple.get(tup, ()):
                    if key in ex or key in seen:
                        continue
                    res.append((key, score))
                    seen.add(key)
                    if len(res) == n:
                        break
                if len(res) == n:
                    break
            out.append(res)
        return out

    def user_vector(self, history):
        """The dense half's user vector: the last `rerank.max_history` history items that have
        a vector."""
        keys = [key for key in history if key in self.vector_of][-self.rerank["max_history"]:]
        vecs = np.stack([self.vector_of[key] for key in keys]) if keys else np.zeros((0, 1), np.float32)
        return self.dense.user_vectors([list(range(len(keys)))], vecs)[0]

    def fuse(self, history, candidates):
        """[(key, lm score)] -> [(key, fused score)] best first (dense.fuse)."""
        from .dense import fuse
        if not candidates:
            return []
        keys = [key for key, _ in candidates]
        dim = len(next(iter(self.vector_of.values())))
        vecs = np.stack([self.vector_of.get(key, np.zeros(dim, np.float32)) for key in keys])
        fused = fuse([(j, s) for j, (_, s) in enumerate(candidates)], self.user_vector(history), vecs,
                     self.rerank["weight"])
        return [(keys[j], s) for j, s in fused]

    def excluded_prefixes(self, ex):
        """Per level, the prefixes (as integers) all of whose items are in `ex`: that level
        skips them (a finished tuple at the last level)."""
        counts = [dict() for _ in range(self.L)]
        for key in ex:
            tup = tuple(self.codes[key]) if key in self.codes else None
            if tup is None or key not in self.by_tuple.get(tup, ()):
                continue
            n = 0
            for l, c in enumerate(tup):
                n = n * self.C + c
                counts[l][n] = counts[l].get(n, 0) + 1
        return [{n for n, k in counts[l].items() if k == self.under[l][n]} for l in range(self.L)]

    def beam_search(self, prompts, beam_width, kv_cache=True, excluded=None, final_width=None):
        """Per prompt: [(code tuple, score)] best first (ties: smaller tuple first). At every
        level l, prefixes in `excluded[prompt][l]` (integers; every item under them excluded)
        are not candidates; the last level keeps `final_width` (default: `beam_width`) tuples."""
        B, L, C = len(prompts), self.L, self.C
        T = max(len(p) for p in prompts)
        ids = np.full((B, T), self.pad, np.int64)
        mask = np.zeros((B, T), np.int64)
        for i, p in enumerate(prompts):
            ids[i, T - len(p):] = p
            mask[i, T - len(p):] = 1
        dec = self.decoder(kv_cache)
        lp = dec.start(ids, mask)
        user = np.arange(B)  # per row (beam): its user
        score = np.zeros(B)
        node = np.zeros(B, np.int64)
        tup = np.zeros(B, np.int64)  # code tuple as an integer, lexicographic = numeric order
        for l in range(L):
            child = self.trie.children[l][node]  # [rows, C]
            cand = score[:, None] + lp[:, l * C: (l + 1) * C]
            r, c = np.nonzero(child >= 0)
            s = cand[r, c]
            t = tup[r] * C + c
            u = user[r]
            if excluded is not None and any(excluded[int(uu)][l] for uu in np.unique(u)):
                keep = np.array([int(tt) not in excluded[int(uu)][l] for tt, uu in zip(t, u)], bool)
                r, c, s, t, u = r[keep], c[keep], s[keep], t[keep], u[keep]
            order = np.lexsort((t, -s, u))
            r, c, s, t, u = r[order], c[order], s[order], t[order], u[order]
            first_of_user = np.searchsorted(u, u, side="left")
            keep = (np.arange(len(u)) - first_of_user) < ((final_width or beam_width) if l + 1 == L else beam_width)
            r, c, s, t, u = r[keep], c[keep], s[keep], t[keep], u[keep]
            node, score, tup, user = child[r, c], s, t, u
            if l + 1 == L or len(r) == 0:
                break
            tok = (self.first + l * C + c)[:, None].astype(np.int64)
            lp = dec.step(r, tok, user)
        res = [[] for _ in range(B)]
        for i in range(len(user)):
            tt, codes = int(tup[i]), []
            for _ in range(L):
                codes.append(tt % C)
                tt //= C
            res[user[i]].append((tuple(codes[::-1]), float(score[i])))
        return res


def timing(bundle, histories, batches=(1, 16, 64), k=10, beam_width=20, max_users=256, modes=(True, False)):
    out = {}
    for kv in modes:
        for b in batches:
            n = min(len(histories), max_users if b > 1 else min(64, max_users))
            n = max(b, n - n % b)
            bundle.recommend(histories[:b], k, beam_width, True, kv)  # warm-up
            t = time.perf_counter()
            for s in range(0, n, b):
                bundle.recommend(histories[s:s + b], k, beam_width, True, kv)
            dt = time.perf_counter() - t
            out[f"batch{b}_{'kv' if kv else 'nokv'}"] = round(n / dt, 2)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--users", type=int, default=256)
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = default)")
    ap.add_argument("--strategy", default="shared_prefix", choices=["shared_prefix", "per_beam"],
                    help="format-2 bundles: decode with one prompt cache per user, or a copy per beam (format 1's cost)")
    ap.add_argument("--modes", default="kv,nokv", help="kv (the cache), nokv (full re-runs), or both")
    a = ap.parse_args()
    b = Bundle(a.bundle, a.threads)
    b.strategy = a.strategy
    with open(os.path.join(a.bundle, b.manifest["files"]["test_vectors"])) as f:
        tv = json.load(f)
    hs = [u["history"] for u in tv["recommendations"]]
    while len(hs) < a.users:
        hs = hs + hs
    modes = tuple(m == "kv" for m in a.modes.split(","))
    r = timing(b, hs, tuple(int(x) for x in a.batches.split(",")), max_users=a.users, modes=modes)
    print(json.dumps({"users_per_second": r, "beam_width": 20, "k": 10, "format_version": b.format,
                      "strategy": b.strategy if b.format == 2 else "per_beam", "threads": a.threads}, indent=1))


if __name__ == "__main__":
    main()
