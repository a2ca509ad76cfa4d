"""Gives a format-3 bundle another bundle's dense half: SASRec's user encoder (user.onnx) and
item vectors (items.jsonl), which must come with the tokenization the LM was trained on.

    python -m convergedb_train.swap_dense LM_BUNDLE DENSE_BUNDLE OUT --data PATH [--format F]

Why: `--tokenization FILE` trains a new LM on an earlier run's codes, but the pipeline retrains
SASRec, and SASRec on several threads is not bit-identical between runs: its new item vectors no
longer match the tokenization's codebooks (`validate` refuses the bundle). This takes the LM
graphs of LM_BUNDLE and everything else from DENSE_BUNDLE (the run whose SASRec trained the
tokenization; both tokenizations must be identical), picks the fusion weight again on the
validation split (dense.choose_weight, the pipeline's rule), recomputes the test metrics of the
hybrid and the beam, the test vectors and the checksums. The model id keeps LM_BUNDLE's prefix
with new digits (format 3: a digest of every scoring file and the re-rank, bundle_id.py): the
re-rank changed, so lists of the old bundle must not count as current."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time

import numpy as np

from . import bundle_id
from . import data as D
from . import dense
from .pipeline import finish_manifest, lm_metrics, log, sha, test_vectors, valid_sample
from .serve_ref import Bundle


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lm_bundle")
    ap.add_argument("dense_bundle")
    ap.add_argument("out")
    ap.add_argument("--data", required=True, help="the dataset both bundles were trained on")
    ap.add_argument("--format", default="auto")
    ap.add_argument("--name")
    a = ap.parse_args()
    t0 = time.time()
    with open(os.path.join(a.lm_bundle, "manifest.json")) as f:
        m = json.load(f)
    with open(os.path.join(a.dense_bundle, "manifest.json")) as f:
        dm = json.load(f)
    if m.get("format_version") != 3 or dm.get("format_version") != 3:
        raise SystemExit("both bundles must be format 3 (a rerank block and user.onnx)")
    for name in ("tokenization.json", "tokenizer.json"):
        if sha(os.path.join(a.lm_bundle, name)) != sha(os.path.join(a.dense_bundle, name)):
            raise SystemExit(f"{name} differs between the bundles: the LM was not trained on the dense bundle's codes")
    if os.path.exists(a.out):
        raise SystemExit(f"{a.out} exists")
    shutil.copytree(a.lm_bundle, a.out)
    for name in ("items.jsonl", "user.onnx"):
        shutil.copyfile(os.path.join(a.dense_bundle, name), os.path.join(a.out, name))
        m["sha256"][name] = sha(os.path.join(a.out, name))
    ds = D.load(a.format, a.data, a.name)
    t = m["training"]
    if t["config"].get("max_users"):  # smoke configurations train on a prefix of the users
        ds.user_keys, ds.histories = ds.user_keys[:t["config"]["max_users"]], ds.histories[:t["config"]["max_users"]]
    split = D.split_loo(ds.histories, t["config"]["max_history"])  # as the pipeline split it
    b = Bundle(a.out, verify=False)
    rank = {k: i for i, k in enumerate(ds.item_keys)}
    dim = len(next(iter(b.vector_of.values())))
    vecs = np.stack([b.vector_of.get(k, np.zeros(dim, np.float32)) for k in ds.item_keys])
    vs = valid_sample(split, t["config"]["lm"].get("valid_users", 1000))
    vh, vt = [split.valid_history[u] for u in vs], [split.valid_target[u] for u in vs]
    n = m["rerank"]["candidates"]
    cands = []
    for s in range(0, len(vh), 64):
        keys = [[ds.item_keys[i] for i in h] for h in vh[s:s + 64]]
        cands.extend([(rank[k], sc) for k, sc in res] for res in b.candidates(keys, n, 20, False))
    users = b.dense.user_vectors(vh, vecs)
    weight, table = dense.choose_weight(cands, users, vecs, vt, t["config"].get("rerank", {}).get("grid"))
    hit = float(np.mean([t_ in {i for i, _ in c} for c, t_ in zip(cands, vt)]))
    log(f"weight {weight}: valid ndcg@10 {table[weight]:.4f} vs beam alone {table[0.0]:.4f}")
    m["rerank"]["weight"] = weight
    t["rerank"] = {**t.get("rerank", {}), "weight": weight, f"valid_recall@{n}": hit,
                   "valid_ndcg@10_by_weight": {str(w): v for w, v in table.items()},
                   "user_onnx_max_abs_diff": dm["training"]["rerank"]["user_onnx_max_abs_diff"]}
    t["sasrec"] = dm["training"]["sasrec"]
    t["dense_from"] = {"model_id": dm["model_id"], "why": __doc__.split("\n\n")[1].strip()}
    m["model_id"] = bundle_id.model_id(a.out, m)
    with open(os.path.join(a.out, "manifest.json"), "w") as f:  # the weight the metrics below use
        json.dump(m, f, indent=1)
    b = Bundle(a.out, verify=False)
    assert b.rerank["weight"] == weight
    metrics = t["metrics_test"]
    for key in ("sasrec", "sasrec_exclude_history", "popularity"):
        metrics[key] = dm["training"]["metrics_test"][key]
    th, tt = split.test_history, split.test_target
    metrics["lm"] = lm_metrics(b, ds, th, tt, exclude=False)
    metrics["lm_exclude_history"] = lm_metrics(b, ds, th, tt, exclude=True)
    metrics["lm_beam"] = lm_metrics(b, ds, th, tt, exclude=False, rerank=False)
    metrics["lm_beam_exclude_history"] = lm_metrics(b, ds, th, tt, exclude=True, rerank=False)
    log(f"test: hybrid {metrics['lm']} beam {metrics['lm_beam']} sasrec {metrics['sasrec']}")
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(m, f, indent=1)
    test_vectors(a.out, b, ds, split, n_users=t["config"].get("test_vector_users", 200))
    finish_manifest(a.out, m)
    Bundle(a.out, verify=True)
    log(f"bundle written to {a.out} in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
