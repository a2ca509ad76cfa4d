"""Times LM training epochs on a dataset with fixed pseudo-random codes (the cost of an epoch does
not depend on the code values, so no SASRec / RQ-VAE is trained first).

    python -m convergedb_train.bench_epoch --data PATH --minilm DIR [--format auto] [--tasks sequential]
        [--threads 1] [--codes 32] [--epochs 1] [key=value ...]   (LM config overrides, JSON values)

Prints one JSON line: seconds per epoch and the configuration. docs/training.md "Training speed"."""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from tokenizers import Tokenizer

from . import data as D
from . import train_lm, vocab
from .pipeline import TEMPLATES


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--format", default="auto")
    ap.add_argument("--minilm", required=True)
    ap.add_argument("--tasks", default="sequential")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--codes", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ds = D.load(a.format, a.data)
    split = D.split_loo(ds.histories, 20)
    L, C = 4, a.codes
    codes = np.random.default_rng(0).integers(0, C, size=(ds.num_items, L))
    templates = TEMPLATES[ds.domain]
    corpus = [t.replace("{history}", "").replace("{text}", "").replace("{query}", "") for t in templates.values()]
    corpus += [ds.item_text(i) for i in range(ds.num_items) if ds.item_text(i)] + train_lm.query_vocab(ds) + [", "]
    tok_text, keep, vinfo = vocab.build(os.path.join(a.minilm, "tokenizer.json"), corpus, L, C)
    crp = train_lm.Corpus(ds, split, codes, Tokenizer.from_str(tok_text), vinfo, templates, ", ", 20, L, C)
    cfg = {"d_model": 128, "layers": 2, "heads": 4, "max_positions": 256, "epochs": a.epochs, "batch": 32,
           "lr": 0.003, "dropout": 0.1, "negative_weight": 0.3, "negatives_per_sequence": 2,
           "tasks": a.tasks.split(",")}
    for kv in a.overrides:
        k, v = kv.split("=", 1)
        cfg[k] = json.loads(v)
    t = time.time()
    _, info = train_lm.train(crp, cfg, print)
    print(json.dumps({"seconds_per_epoch": info["seconds_per_epoch"], "wall_s": time.time() - t,
                      "threads": a.threads, "cfg": cfg}))


if __name__ == "__main__":
    main()
