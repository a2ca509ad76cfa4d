"""Stage 2, "Alignment Tasks": the LM is trained on a mix of
- sequential: history IDs -> next item's IDs. One training sequence is a window of up to
  max_history + 1 items rendered with the serving template; because the template ends with the
  item separator's punctuation, the token prefix before item j *is* the rendered prompt of the
  history window[:j], so one causal forward trains every next-item prediction of the window;
- text: item text -> its IDs;
- query: a search-like query built from genres/year -> the IDs of an item matching it;
- negative sampling: for sampled targets of the sequential task, an item the user never
  interacted with (in the training split) is teacher-forced after the same prefix (reusing the
  prefix's K/V) and a pairwise loss softplus(log p(neg) - log p(pos)) pushes it below the target.
Loss (cross-entropy over the full vocabulary) only on the ID tokens of targets."""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from .lm import GPT
from .metrics import windows
from .vocab import sid_token


def item_string(codes):
    return "".join(sid_token(l, c) for l, c in enumerate(codes))


def make_query(attrs, rng):
    g = [x.lower() for x in (attrs.get("genres") or "").split()]
    words = []
    if g:
        pick = rng.choice(len(g), size=min(len(g), int(rng.integers(1, 3))), replace=False)
        words.append(" and ".join(g[i] for i in sorted(pick)))
    y = attrs.get("year")
    r = rng.random()
    tail = ""
    if y and y.isdigit():
        if r < 0.35:
            tail = f" from {y}"
        elif r < 0.7:
            tail = f" from the {y[:3]}0s"
    return ("a " + (words[0] if words else "") + " movie" + tail).replace("a  movie", "a movie")


def query_vocab(ds):
    """Strings covering every word make_query can emit (for vocabulary pruning)."""
    g = sorted({x.lower() for a in ds.attributes for x in (a.get("genres") or "").split()})
    ys = sorted({a["year"] for a in ds.attributes if a.get("year")})
    return [" ".join(g) + " a movie and from the", " ".join(ys), " ".join(f"{y[:3]}0s" for y in ys)]


class Corpus:
    def __init__(self, ds, split, codes, tokenizer, vinfo, templates, sep, max_history, levels, C):
        self.ds, self.split, self.codes = ds, split, codes
        self.tok, self.v = tokenizer, vinfo
        self.templates, self.sep, self.H, self.L, self.C = templates, sep, max_history, levels, C
        enc = lambda s: tokenizer.encode(s, add_special_tokens=False).ids
        pre, post = templates["sequential"].split("{history}")
        self.seq_pre, self.seq_post, self.sep_ids = enc(pre), enc(post), enc(sep)
        self.item_ids = [[vinfo["first_token_id"] + l * C + int(c) for l, c in enumerate(cs)] for cs in codes]
        self.enc = enc
        self.text_ids = [enc(templates["text"].replace("{text}", ds.item_text(i) or "")) for i in range(ds.num_items)]
        self.train_sets = [set(s) for s in split.train]

    def render_ids(self, history):
        """bos ++ prompt ids composed from pieces (checked equal to tokenizing the rendered text)."""
        ids = [self.v["bos"]] + list(self.seq_pre)
        for j, it in enumerate(history):
            if j:
                ids += self.sep_ids
            ids += self.item_ids[it]
        return ids + list(self.seq_post)

    def render_text(self, history):
        return self.templates["sequential"].replace(
            "{history}", self.sep.join(item_string(self.codes[i]) for i in history))

    def seq_example(self, win, user):
        ids = self.render_ids(win)
        # target j's first ID token sits right after the prefix of window[:j]
        targets, starts = [], []
        pos = 1 + len(self.seq_pre)
        for j, it in enumerate(win):
            if j:
                pos += len(self.sep_ids)
            if j:
                targets.append(it)
                starts.append(pos)
            pos += self.L
        return ids, starts, targets

    def epoch(self, rng, tasks):
        ex = []  # (ids, target starts, target items, user or -1)
        if "sequential" in tasks:
            for u, s in enumerate(self.split.train):
                for w in windows([s], self.H + 1, rng):
                    ids, st, tg = self.seq_example(w, u)
                    ex.append((ids, st, tg, u))
        if "text" in tasks:
            for i in range(self.ds.num_items):
                if self.ds.titles[i] is None:
                    continue
                ids = [self.v["bos"]] + self.text_ids[i]
                ex.append((ids + self.item_ids[i], [len(ids)], [i], -1))
        if "query" in tasks:
            for i in range(self.ds.num_items):
                if not self.ds.attributes[i]:
                    continue
                q = make_query(self.ds.attributes[i], rng)
                ids = [self.v["bos"]] + self.enc(self.templates["query"].replace("{query}", q))
                ex.append((ids + self.item_ids[i], [len(ids)], [i], -1))
        return ex


def batches(ex, bs, rng):
    perm = rng.permutation(len(ex))
    out = []
    for g in range(0, len(perm), bs * 32):
        grp = sorted(perm[g:g + bs * 32], key=lambda i: len(ex[i][0]))
        out += [grp[s:s + bs] for s in range(0, len(grp), bs)]
    rng.shuffle(out)
    return out


def train(corpus, cfg, log=print, init_emb=None):
    torch.manual_seed(cfg.get("seed", 0))
    rng = np.random.default_rng(cfg.get("seed", 0))
    v, L = corpus.v, corpus.L
    model = GPT(v["vocab_size"], cfg["d_model"], cfg["layers"], cfg["heads"], cfg["max_positions"], cfg.get("dropout", 0.1))
    if init_emb is not None:
        with torch.no_grad():
            model.tok.weight[: len(init_emb)] = torch.from_numpy(init_emb)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.get("lr", 2e-3), weight_decay=0.01)
    tasks = cfg.get("tasks", ["sequential", "text", "query", "negative"])
    neg_w, neg_k = cfg.get("negative_weight", 0.3), cfg.get("negatives_per_sequence", 2)
    epochs = cfg["epochs"]
    nb_est = None
    step, t0, ep_times = 0, time.time(), []
    for ep in range(epochs):
        te = time.time()
        model.train()
        ex = corpus.epoch(rng, tasks)
        bl = batches(ex, cfg.get("batch", 32), rng)
        nb_est = nb_est or len(bl) * epochs
        tot = totn = 0.0
        for b in bl:
            lr = cfg.get("lr", 2e-3) * min(1.0, (step + 1) / 100) * max(0.05, 1 - step / nb_est)
            for gparam in opt.param_groups:
                gparam["lr"] = lr
            step += 1
            T = max(len(ex[i][0]) for i in b)
            ids = torch.zeros(len(b), T, dtype=torch.long)
            mask = torch.zeros(len(b), T, dtype=torch.long)
            rows, cols, labels, tgt_rows = [], [], [], []
            for r, i in enumerate(b):
                s = ex[i][0]
                ids[r, :len(s)] = torch.tensor(s)
                mask[r, :len(s)] = 1
                for st in ex[i][1]:
                    for l in range(L):
                        rows.append(r); cols.append(st + l - 1); labels.append(s[st + l])
            pos = torch.arange(T).unsqueeze(0).expand(len(b), T)
            h, presents = model.hidden(ids, mask, pos)
            rows_t, cols_t = torch.tensor(rows), torch.tensor(cols)
            lg = model.logits(h[rows_t, cols_t])
            lab = torch.tensor(labels)
            loss = F.cross_entropy(lg, lab)
            if "negative" in tasks and neg_w > 0:
                nl = _negative_loss(model, corpus, ex, b, h, presents, mask, lg, lab, rng, neg_k)
                if nl is not None:
                    loss = loss + neg_w * nl
                    totn += nl.item()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            tot += loss.item()
        ep_times.append(time.time() - te)
        log(f"lm epoch {ep + 1}/{epochs} loss {tot / len(bl):.4f} neg {totn / len(bl):.4f} "
            f"({ep_times[-1]:.0f}s, {len(ex)} sequences)")
    info = {"epochs": epochs, "seconds": time.time() - t0, "seconds_per_epoch": float(np.mean(ep_times)),
            "params": sum(p.numel() for p in model.parameters()), "tasks": tasks}
    return model.eval(), info


def _negative_loss(model, corpus, ex, b, h, presents, mask, lg, lab, rng, k):
    """Pairwise loss between sampled sequential targets and never-seen items after the same prefix."""
    L = corpus.L
    # offsets of each example's targets in the flattened (rows, cols) order
    picks = []  # (row, start, positive flat offset)
    off = 0
    for r, i in enumerate(b):
        ids, starts, tg, u = ex[i]
        if u >= 0 and starts:
            for j in rng.choice(len(starts), size=min(k, len(starts)), replace=False):
                picks.append((r, starts[j], off + j * L, u))
        off += len(starts) * L
    if not picks:
        return None
    N = corpus.ds.num_items
    negs = []
    for r, st, o, u in picks:
        while True:
            n = int(rng.integers(N))
            if n not in corpus.train_sets[u]:
                break
        negs.append(corpus.item_ids[n])
    negs = torch.tensor(negs)  # [P, L]
    P = len(picks)
    rows = torch.tensor([p[0] for p in picks])
    st = torch.tensor([p[1] for p in picks])
    T = mask.shape[1]
    # positive log-prob: sum over its L tokens (already computed logits)
    lp_all = F.log_softmax(lg, -1)
    pos_off = torch.tensor([p[2] for p in picks])
    idx = pos_off[:, None] + torch.arange(L)[None]
    lp_pos = lp_all[idx, lab[idx]].sum(1)
    # negative: first token from the prefix's last hidden state; the rest fed with the prefix K/V
    h0 = h[rows, st - 1]
    lp_neg = F.log_softmax(model.logits(h0), -1).gather(1, negs[:, :1]).squeeze(1)
    past = [(k_[rows], v_[rows]) for k_, v_ in presents]
    keymask = (torch.arange(T)[None] < st[:, None]).long()
    am = torch.cat([keymask, torch.ones(P, L - 1, dtype=torch.long)], 1)
    pos = st[:, None] + torch.arange(L - 1)[None]
    hn, _ = model.hidden(negs[:, :-1], am, pos, past)
    lpn = F.log_softmax(model.logits(hn), -1).gather(2, negs[:, 1:, None]).squeeze(2).sum(1)
    lp_neg = lp_neg + lpn
    return F.softplus(lp_neg - lp_pos).mean()
