"""What the exclusion rule of the constrained search does for users whose whole history is
excluded (the database's serving default): list lengths and the held-out item's rank, with the
rule at every level (the contract since 2026-12-04) against the rule at the last level only.

Every user of the dataset, leave-one-out: the prompt holds the last `max_history` items before
the test item, and the exclusion set is every item before it (heavy users: hundreds). Python
reference search (serve_ref.py), which the database replays exactly through the test vectors.

    python -m convergedb_train.exclusion models/ml100k --ml100k DIR [--users N]
"""
import argparse
import json
import time

from . import data as D
from .metrics import rank_metrics
from .serve_ref import Bundle


def last_level_only(bundle):
    """The earlier rule: only finished tuples whose items are all excluded are skipped."""
    every = bundle.excluded_prefixes

    def rule(ex):
        sets = every(ex)
        return [set() for _ in sets[:-1]] + [sets[-1]]
    return rule


def measure(bundle, histories, targets, k=10, batch=32):
    rank = {}
    lens, topk = [], []
    for s in range(0, len(histories), batch):
        for res in bundle.recommend(histories[s:s + batch], k, 20, True):
            lens.append(len(res))
            topk.append([rank.setdefault(key, len(rank)) for key, _ in res])
    ids = [rank.setdefault(t, len(rank)) for t in targets]
    m = rank_metrics(topk, ids)
    return {"users": len(lens), "short_lists": sum(n < k for n in lens),
            "empty_lists": sum(n == 0 for n in lens), "mean_length": sum(lens) / len(lens),
            "recall@10": m["recall@10"], "ndcg@10": m["ndcg@10"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--ml100k", required=True, help="directory of ml-100k.inter / ml-100k.item")
    ap.add_argument("--users", type=int, default=0, help="the heaviest N users only (0: all)")
    args = ap.parse_args()
    ds = D.load_ml100k(args.ml100k)
    users = range(len(ds.histories))
    if args.users:
        users = sorted(users, key=lambda u: -len(ds.histories[u]))[:args.users]
    hist = [[ds.item_keys[i] for i in ds.histories[u][:-1]] for u in users]
    targets = [ds.item_keys[ds.histories[u][-1]] for u in users]
    bundle = Bundle(args.bundle, threads=1)
    out = {}
    for name in ("every_level", "last_level_only"):
        if name == "last_level_only":
            bundle.excluded_prefixes = last_level_only(bundle)
        t = time.perf_counter()
        out[name] = measure(bundle, hist, targets)
        out[name]["seconds"] = round(time.perf_counter() - t, 1)
        print(name, json.dumps(out[name]), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
