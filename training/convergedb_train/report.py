"""Prints the metrics table of a bundle's manifest (docs/quality.md is written from it).

    python -m convergedb_train.report models/ml100k/manifest.json"""
import json
import sys

ROWS = [("lm", "LM, all alignment tasks (ours)"), ("lm_sequential_only", "LM, sequential task only (ablation)"),
        ("sasrec", "SASRec"), ("popularity", "popularity"),
        ("lm_exclude_history", "LM, all tasks, history excluded (not the protocol; for reference)")]


def table(manifest):
    m = manifest["training"]["metrics_test"]
    out = ["| model | Recall@5 | NDCG@5 | Recall@10 | NDCG@10 |", "|---|---|---|---|---|"]
    for key, name in ROWS:
        if key in m:
            r = m[key]
            out.append(f"| {name} | {r['recall@5']:.4f} | {r['ndcg@5']:.4f} | {r['recall@10']:.4f} | {r['ndcg@10']:.4f} |")
    return "\n".join(out)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        man = json.load(f)
    print(table(man))
    t = man["training"]
    print(json.dumps({k: t.get(k) for k in ("sasrec", "rqvae", "lm", "ablation", "onnx_max_abs_logit_diff",
                                             "eval_seconds", "total_seconds")}, indent=1))
