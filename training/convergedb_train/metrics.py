"""Leave-one-out ranking metrics (one target per user)."""
import numpy as np


def rank_metrics(topk, targets, ks=(5, 10)):
    """topk: per user a ranked list of item indices; targets: per user the held-out item."""
    out = {}
    n = len(targets)
    for k in ks:
        rec = ndcg = 0.0
        for lst, t in zip(topk, targets):
            lst = list(lst[:k])
            if t in lst:
                r = lst.index(t)
                rec += 1.0
                ndcg += 1.0 / np.log2(r + 2)
        out[f"recall@{k}"] = rec / n
        out[f"ndcg@{k}"] = ndcg / n
    return out


def windows(seqs, length, rng, min_len=2):
    """Random-offset chunks of `length` items covering each sequence from its end."""
    out = []
    for s in seqs:
        if len(s) < min_len:
            continue
        end = len(s) - int(rng.integers(0, length)) if len(s) > length else len(s)
        while end >= min_len:
            out.append(s[max(0, end - length):end])
            end -= length
        if len(s) > length and end < min_len and end > 0:
            pass
    return out
