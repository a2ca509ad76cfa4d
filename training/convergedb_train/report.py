"""Prints the metrics table of a bundle's manifest (docs/quality.md is written from it).

    python -m convergedb_train.report models/ml100k/manifest.json"""
import json
import sys

ROWS = [("lm", "LM, all alignment tasks (ours)"), ("lm_sequential_only", "LM, sequential task only (ablation)"),
        ("sasrec", "SASRec"), ("popularity", "popularity"),
        ("sasrec_exclude_history", "SASRec, history excluded (not the protocol; for reference)"),
        ("lm_exclude_history", "LM, all tasks, history excluded (not the protocol; for reference)")]


def table(manifest):
    t = manifest["training"]
    m = t["metrics_test"]
    tasks = (t.get("lm") or {}).get("tasks")
    rows = list(ROWS)
    if tasks:
        lm = t["lm"]
        run = f"{lm['epochs']} epochs" + (f", best {lm['best_epoch']}" if lm.get("best_valid_ndcg@10") else "")
        rows[0] = ("lm", f"LM, tasks {'+'.join(tasks)} ({run})")
        rows[-1] = ("lm_exclude_history", f"LM, tasks {'+'.join(tasks)}, history excluded (not the protocol; for reference)")
    out = ["| model | Recall@5 | NDCG@5 | Recall@10 | NDCG@10 |", "|---|---|---|---|---|"]
    for key, name in rows:
        if key in m:
            r = m[key]
            out.append(f"| {name} | {r['recall@5']:.4f} | {r['ndcg@5']:.4f} | {r['recall@10']:.4f} | {r['ndcg@10']:.4f} |")
    return "\n".join(out)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        man = json.load(f)
    print(table(man))
    t = man["training"]
    strip = lambda d: {k: v for k, v in d.items() if k != "curve"} if isinstance(d, dict) else d
    print(json.dumps({k: strip(t.get(k)) for k in ("sasrec", "rqvae", "lm", "ablation", "onnx_max_abs_logit_diff",
                                                    "eval_seconds", "total_seconds")}, indent=1))
