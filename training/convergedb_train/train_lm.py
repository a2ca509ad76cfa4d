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
Loss only on the ID tokens of targets: by default (`id_softmax`) the output is restricted to the
ID tokens (GPT.restrict_output) and the cross-entropy is over them only; otherwise over the full
vocabulary."""
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


def make_query(attrs, rng, noun="movie"):
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
    return ("a " + (words[0] if words else "") + f" {noun}" + tail).replace(f"a  {noun}", f"a {noun}")


def noun(ds):
    return "movie" if getattr(ds, "domain", "item") == "movie" else "item"


def query_vocab(ds):
    """Strings covering every word make_query can emit (for vocabulary pruning)."""
    g = sorted({x.lower() for a in ds.attributes for x in (a.get("genres") or "").split()})
    ys = sorted({a["year"] for a in ds.attributes if a.get("year")})
    return [" ".join(g) + f" a {noun(ds)} and from the", " ".join(ys), " ".join(f"{y[:3]}0s" for y in ys)]


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
                q = make_query(self.ds.attributes[i], rng, noun(self.ds))
                ids = [self.v["bos"]] + self.enc(self.templates["query"].replace("{query}", q))
                ex.append((ids + self.item_ids[i], [len(ids)], [i], -1))
        return ex


def batches(ex, bs, rng):
    """Batches of similar length (sorted within random chunks of 32 batches), in random order."""
    perm = rng.permutation(len(ex))
    out = []
    for g in range(0, len(perm), bs * 32):
        grp = sorted(perm[g:g + bs * 32], key=lambda i: len(ex[i][0]))
        out += [grp[s:s + bs] for s in range(0, len(grp), bs)]
    rng.shuffle(out)
    return out


def lr_at(step, total, cfg):
    """Linear warm-up over `warmup_steps`, then cosine decay to `min_lr_ratio` x lr at `total`
    (= the maximum number of steps; early stopping usually ends training before). `schedule`
    "plateau": warm-up, then constant; train() halves it after `plateau_patience` evaluations
    without a better validation NDCG@10 (so early stopping cannot end a run before its learning
    rate has decayed, whatever the dataset's number of epochs)."""
    lr, warm = cfg.get("lr", 2e-3), cfg.get("warmup_steps", 200)
    if cfg.get("schedule", "cosine") == "plateau":  # warm-up, then lr x the plateau factor (train())
        return lr * min(1.0, (step + 1) / warm)
    if cfg.get("schedule", "cosine") == "linear":  # the first pipeline's schedule (configs/ml100k.json)
        return lr * min(1.0, (step + 1) / warm) * max(cfg.get("min_lr_ratio", 0.05), 1 - step / max(total, 1))
    if step < warm:
        return lr * (step + 1) / warm
    p = min(1.0, (step - warm) / max(1, total - warm))
    lo = cfg.get("min_lr_ratio", 0.05)
    return lr * (lo + (1 - lo) * 0.5 * (1 + np.cos(np.pi * p)))


def _batch_tensors(ex, b, L, first, id_only, device):
    T = max(len(ex[i][0]) for i in b)
    ids = np.zeros((len(b), T), np.int64)
    lens = np.zeros(len(b), np.int64)
    rows, cols, labels = [], [], []
    for r, i in enumerate(b):
        s = ex[i][0]
        ids[r, :len(s)] = s
        lens[r] = len(s)
        for st in ex[i][1]:
            for l in range(L):
                rows.append(r); cols.append(st + l - 1); labels.append(s[st + l])
    mask = (np.arange(T)[None] < lens[:, None]).astype(np.int64)
    lab = np.asarray(labels, np.int64) - (first if id_only else 0)
    t = lambda a: torch.from_numpy(a).to(device)
    return t(ids), t(mask), t(np.asarray(rows, np.int64)), t(np.asarray(cols, np.int64)), t(lab)


def train(corpus, cfg, log=print, init_emb=None, device="cpu", validate=None, curve_path=None):
    """Trains the LM; returns (model on the CPU, eval mode; info).

    cfg: d_model, layers, heads, max_positions, dropout, batch, lr, warmup_steps, min_lr_ratio,
    epochs (the maximum), tasks, negative_weight, negatives_per_sequence, seed,
    `id_softmax` (default true: the output is restricted to the ID tokens, and the loss is the
    cross-entropy over them only; false: over the whole vocabulary, the old behaviour), and for
    early stopping `eval_every` (epochs), `patience` (evaluations without a better validation
    NDCG@10), `min_epochs` (no early stop before it; default 0) and `select_window` (W, default
    1). `validate(model) -> dict with "ndcg@10"` (the constrained beam search on a fixed
    validation sample) selects the checkpoint: with W = 1 the best evaluation's; with W > 1 the
    window of W consecutive evaluations with the best mean NDCG@10 wins and the returned model is
    the average of those W checkpoints' weights (checkpoint averaging: one noisy validation
    spike neither picks the checkpoint nor stops training; the average is validated once more
    and reported as `averaged_valid_ndcg@10`). Without `validate`, the last epoch's model is
    returned."""
    torch.manual_seed(cfg.get("seed", 0))
    rng = np.random.default_rng(cfg.get("seed", 0))
    v, L = corpus.v, corpus.L
    first, nid = v["first_token_id"], corpus.L * corpus.C
    model = GPT(v["vocab_size"], cfg["d_model"], cfg["layers"], cfg["heads"], cfg["max_positions"], cfg.get("dropout", 0.1))
    if init_emb is not None:
        with torch.no_grad():
            model.tok.weight[: len(init_emb)] = torch.from_numpy(init_emb)
    id_only = cfg.get("id_softmax", True)
    if id_only:
        model.restrict_output(first, nid)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.get("lr", 2e-3), weight_decay=cfg.get("weight_decay", 0.01))
    tasks = cfg.get("tasks", ["sequential", "text", "query", "negative"])
    neg_w, neg_k = cfg.get("negative_weight", 0.3), cfg.get("negatives_per_sequence", 2)
    epochs, eval_every, patience = cfg["epochs"], cfg.get("eval_every", 1), cfg.get("patience", 5)
    total_steps = None
    step, t0, ep_times, eval_s = 0, time.time(), [], 0.0
    curve, best, best_state, best_epoch, bad = [], -1.0, None, 0, 0
    window, W = [], max(1, int(cfg.get("select_window", 1)))  # the last W (ndcg, state) evaluations
    min_epochs = int(cfg.get("min_epochs", 0))
    stopped = "max_epochs"
    factor, since_cut = 1.0, 0  # plateau schedule: the learning-rate factor, evaluations since the last cut
    plateau = cfg.get("schedule", "cosine") == "plateau"
    for ep in range(epochs):
        te = time.time()
        model.train()
        ex = corpus.epoch(rng, tasks)
        bl = batches(ex, cfg.get("batch", 32), rng)
        total_steps = total_steps or len(bl) * epochs
        tot = totn = 0.0
        for b in bl:
            lr = lr_at(step, total_steps, cfg) * factor
            for gparam in opt.param_groups:
                gparam["lr"] = lr
            step += 1
            ids, mask, rows_t, cols_t, lab = _batch_tensors(ex, b, L, first, id_only, device)
            pos = torch.arange(ids.shape[1], device=device).unsqueeze(0).expand_as(ids)
            h, presents = model.hidden(ids, mask, pos)
            hs = h[rows_t, cols_t]  # loss only where the targets are
            lg = model.id_logits(hs, first, nid) if id_only else model.logits(hs)
            loss = F.cross_entropy(lg, lab)
            if "negative" in tasks and neg_w > 0:
                nl = _negative_loss(model, corpus, ex, b, h, presents, mask, lg, lab, rng, neg_k, id_only)
                if nl is not None:
                    loss = loss + neg_w * nl
                    totn += nl.item()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            tot += loss.item()
        ep_times.append(time.time() - te)
        row = {"epoch": ep + 1, "loss": tot / len(bl), "negative_loss": totn / len(bl), "lr": lr,
               "seconds": ep_times[-1], "sequences": len(ex)}
        msg = f"lm epoch {ep + 1}/{epochs} loss {row['loss']:.4f} neg {row['negative_loss']:.4f} lr {lr:.2e} " \
              f"({ep_times[-1]:.0f}s, {len(ex)} sequences)"
        if validate is not None and ((ep + 1) % eval_every == 0 or ep + 1 == epochs):
            tv = time.time()
            model.eval()
            met = validate(model)
            eval_s += time.time() - tv
            row.update({f"valid_{k}": x for k, x in met.items()})
            msg += f" valid ndcg@10 {met['ndcg@10']:.4f} recall@10 {met['recall@10']:.4f} ({time.time() - tv:.0f}s)"
            window = (window + [(met["ndcg@10"], {k: x.detach().cpu().clone() for k, x in model.state_dict().items()})])[-W:]
            score = float(np.mean([m for m, _ in window]))
            if W > 1:
                row["valid_window_ndcg@10"] = score
                msg += f" window mean {score:.4f}"
            if score > best:
                best, best_epoch, bad, since_cut = score, ep + 1, 0, 0
                best_state = average_states([st for _, st in window])
                msg += " *"
            else:
                bad += 1
                since_cut += 1
                if plateau and since_cut >= cfg.get("plateau_patience", 3) and factor > cfg.get("min_lr_ratio", 0.05):
                    factor, since_cut = factor * 0.5, 0
                    msg += f" (lr x {factor:g})"
        curve.append(row)
        log(msg)
        if curve_path:
            write_curves(curve_path, curve, best_epoch)
        if validate is not None and bad >= patience and ep + 1 >= min_epochs:
            stopped = f"early stop: no better validation NDCG@10 in {patience} evaluations"
            break
    model = model.cpu()
    averaged = None
    if best_state is not None:
        model.load_state_dict(best_state)
        if W > 1:  # the exported model is the average: validate it as such
            tv = time.time()
            model.eval()
            averaged = validate(model)["ndcg@10"]
            eval_s += time.time() - tv
            log(f"lm: average of the {W} checkpoints ending at epoch {best_epoch}: valid ndcg@10 {averaged:.4f}")
    info = {"epochs": len(curve), "max_epochs": epochs, "stopped": stopped, "best_epoch": best_epoch or len(curve),
            "best_valid_ndcg@10": best if best >= 0 else None, "select_window": W,
            "averaged_valid_ndcg@10": averaged,
            "seconds": time.time() - t0, "seconds_per_epoch": float(np.mean(ep_times)),
            "validation_seconds": eval_s, "params": sum(p.numel() for p in model.parameters()), "tasks": tasks,
            "id_softmax": id_only, "device": str(device), "threads": torch.get_num_threads(), "curve": curve}
    return model.eval(), info


def average_states(states):
    """The element-wise mean of state dicts (floating tensors; others from the last one)."""
    if len(states) == 1:
        return states[0]
    out = {}
    for k, x in states[-1].items():
        out[k] = torch.stack([st[k] for st in states]).mean(0) if x.is_floating_point() else x.clone()
    return out


def write_curves(path, curve, best_epoch):
    """PATH.json (the per-epoch rows) and PATH.png (loss and validation NDCG@10 per epoch)."""
    import json
    with open(path + ".json", "w") as f:
        json.dump({"best_epoch": best_epoch, "epochs": curve}, f, indent=1)
        f.write("\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the JSON is enough; scripts/lib.sh installs matplotlib
        return
    ep = [r["epoch"] for r in curve]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(ep, [r["loss"] for r in curve], "b-", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss", color="b")
    ve = [(r["epoch"], r["valid_ndcg@10"]) for r in curve if "valid_ndcg@10" in r]
    if ve:
        ax2 = ax.twinx()
        ax2.plot([e for e, _ in ve], [x for _, x in ve], "r.-", label="valid NDCG@10")
        vw = [(r["epoch"], r["valid_window_ndcg@10"]) for r in curve if "valid_window_ndcg@10" in r]
        if vw:  # select_window > 1: the window mean that selects the checkpoint
            ax2.plot([e for e, _ in vw], [x for _, x in vw], "m--", lw=1, label="window mean")
        ax2.set_ylabel("validation NDCG@10 (beam search)", color="r")
        if best_epoch:
            ax2.axvline(best_epoch, color="gray", ls=":", lw=1)
    ax.set_title(f"LM training (best epoch {best_epoch})")
    fig.tight_layout()
    fig.savefig(path + ".png", dpi=100)
    plt.close(fig)


def _negative_loss(model, corpus, ex, b, h, presents, mask, lg, lab, rng, k, id_only=False):
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
    dev = h.device
    negs = torch.tensor(negs, device=dev)  # [P, L]
    P = len(picks)
    rows = torch.tensor([p[0] for p in picks], device=dev)
    st = torch.tensor([p[1] for p in picks], device=dev)
    T = mask.shape[1]
    first, nid = corpus.v["first_token_id"], corpus.L * corpus.C
    head = (lambda x: model.id_logits(x, first, nid)) if id_only else model.logits
    shift = first if id_only else 0
    # positive log-prob: sum over its L tokens (already computed logits)
    lp_all = F.log_softmax(lg, -1)
    pos_off = torch.tensor([p[2] for p in picks], device=dev)
    idx = pos_off[:, None] + torch.arange(L, device=dev)[None]
    lp_pos = lp_all[idx, lab[idx]].sum(1)
    # negative: first token from the prefix's last hidden state; the rest fed with the prefix K/V
    h0 = h[rows, st - 1]
    lp_neg = F.log_softmax(head(h0), -1).gather(1, negs[:, :1] - shift).squeeze(1)
    past = [(k_[rows], v_[rows]) for k_, v_ in presents]
    keymask = (torch.arange(T, device=dev)[None] < st[:, None]).long()
    am = torch.cat([keymask, torch.ones(P, L - 1, dtype=torch.long, device=dev)], 1)
    pos = st[:, None] + torch.arange(L - 1, device=dev)[None]
    hn, _ = model.hidden(negs[:, :-1], am, pos, past)
    lpn = F.log_softmax(head(hn), -1).gather(2, negs[:, 1:, None] - shift).squeeze(2).sum(1)
    lp_neg = lp_neg + lpn
    return F.softplus(lp_neg - lp_pos).mean()
