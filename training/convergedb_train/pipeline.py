"""End to end: data -> SASRec -> RQ-VAE tokenization -> LM -> ONNX bundle -> evaluation.

    python -m convergedb_train.pipeline --data PATH [--format auto|movielens|recbole|lcrec]
        [--name NAME] --minilm DIR --out DIR --config FILE [--tokenization FILE|index]
        [--device auto|cpu|cuda[:N]] [--threads N]

PATH is a dataset folder or one of its files (data.py: the LC-Rec/LETTER JSON layout
NAME.inter.json [+ NAME.item.json, NAME.index.json], RecBole atomic files NAME.inter
[+ NAME.item], or GroupLens MovieLens files); the format is detected unless given."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import time

import numpy as np
import torch

from . import bundle_id
from . import data as D
from . import export as E
from . import dense, rqvae, sasrec, search, serve_ref
from . import tokenization as tkz
from . import train_lm, vocab
from .metrics import rank_metrics
from .textenc import MiniLM

# prompt wording by the dataset's domain (data.Dataset.domain); a config's "templates" overrides
TEMPLATES = {
    "movie": {"sequential": "A user watched these movies in order: {history},",
              "text": "The movie {text} has the ID",
              "query": "Search: {query}. The best match is"},
    "item": {"sequential": "A user bought these items in order: {history},",
             "text": "The item {text} has the ID",
             "query": "Search: {query}. The best match is"},
}
SEP = ", "


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def write_items(path, ds, vecs, name):
    with open(path, "w") as f:
        for i, k in enumerate(ds.item_keys):
            o = {"key": k}
            if ds.titles[i] is not None:
                o["title"] = ds.titles[i]
            if ds.attributes[i]:
                o["attributes"] = ds.attributes[i]
            o["vectors"] = {name: tkz.f32_list(vecs[i])}
            f.write(json.dumps(o, ensure_ascii=False, separators=(",", ":")) + "\n")


def init_embeddings(minilm, keep_ids, d, seed=0):
    """MiniLM word embeddings of the kept WordPiece tokens, PCA-projected to d dims, std 0.02."""
    E_ = minilm.word_embeddings()[keep_ids].astype(np.float64)
    E_ = E_ - E_.mean(0)
    u, s, vt = np.linalg.svd(E_, full_matrices=False)
    P = E_ @ vt[:d].T
    if P.shape[1] < d:
        P = np.concatenate([P, np.random.default_rng(seed).normal(0, P.std(), (len(P), d - P.shape[1]))], 1)
    return (P / P.std() * 0.02).astype(np.float32)


def popularity_topk(split, n, k=10):
    cnt = np.zeros(n)
    for s in split.train:
        for i in s:
            cnt[i] += 1
    top = list(np.argsort(-cnt, kind="stable")[:k])
    return top


def lm_metrics(bundle, ds, hist, targets, exclude=False, batch=64, rerank=True):
    keys = [[ds.item_keys[i] for i in h] for h in hist]
    rank = {k: i for i, k in enumerate(ds.item_keys)}
    topk = []
    for s in range(0, len(keys), batch):
        for res in bundle.recommend(keys[s:s + batch], 10, 20, exclude, rerank=rerank):
            topk.append([rank[k] for k, _ in res])
    return rank_metrics(topk, targets)


def build_bundle(out, ds, split, codes_by_item, tok_dict, tok_text, vinfo, model, cfg, vecs, templates, extra):
    """Writes a format-2 bundle (docs/model-bundle.md): prefill.onnx + decode.onnx
    (shared-prefix decoding), tokenizer, tokenization, items; test vectors come later."""
    os.makedirs(out, exist_ok=True)
    first, L, C = vinfo["first_token_id"], tok_dict["levels"], tok_dict["codes"]
    E.export_v2(model, os.path.join(out, "prefill.onnx"), os.path.join(out, "decode.onnx"), first, L * C)
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        f.write(tok_text)
    tkz.write(os.path.join(out, "tokenization.json"), tok_dict)
    write_items(os.path.join(out, "items.jsonl"), ds, vecs, "sasrec")
    c = model.cfg
    files = {"onnx": "prefill.onnx", "decode": "decode.onnx", "tokenizer": "tokenizer.json",
             "tokenization": "tokenization.json", "items": "items.jsonl", "test_vectors": "test_vectors.json"}
    manifest = {
        "format": "convergedb.bundle", "format_version": 2,
        "model_id": f"{cfg['model_id_prefix']}-{sha(os.path.join(out, 'prefill.onnx'))[:8]}",
        "dataset": ds.name, "files": files,
        "sha256": {n: sha(os.path.join(out, n)) for n in
                   ("prefill.onnx", "decode.onnx", "tokenizer.json", "tokenization.json", "items.jsonl")},
        "sid": {"levels": L, "codes": C, "fingerprint": tok_dict["fingerprint"],
                "token_format": "<{letter}_{code}>", "first_token_id": first},
        "special_tokens": {"bos": vinfo["bos"], "eos": vinfo["eos"], "pad": vinfo["pad"]},
        "prompt": {"templates": templates, "serving_template": "sequential", "item_separator": SEP,
                   "max_history": cfg["max_history"]},
        "graph": {"num_layers": c["layers"], "num_heads": c["heads"], "head_dim": c["d"] // c["heads"],
                  "vocab_size": c["vocab"], "kv_cache": True, "max_positions": c["max_pos"],
                  "decoding": "shared_prefix", "id_logits": {"start": first, "count": L * C}},
        "training": extra,
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    return manifest


def finish_manifest(out, manifest):
    manifest["sha256"]["test_vectors.json"] = sha(os.path.join(out, "test_vectors.json"))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


def test_vectors(out, bundle, ds, split, n_prompts=20, n_users=200):
    rng = np.random.default_rng(0)
    users = list(range(len(ds.user_keys)))[:n_users]
    prompts = []
    for u in rng.choice(len(ds.user_keys), n_prompts, replace=False):
        n = int(rng.integers(0, bundle.max_history + 3))
        h = [ds.item_keys[i] for i in split.test_history[u]][-n:] if n else []
        prompts.append({"history": h, "prompt": bundle.render(h), "input_ids": bundle.prompt_ids(h)})
    recs = []
    for u in users:
        h = [ds.item_keys[i] for i in split.test_history[u]]
        res = bundle.recommend([h], 10, 20, True)[0]
        recs.append({"user": ds.user_keys[u], "history": h, "k": 10, "beam_width": 20, "exclude_history": True,
                     "expected": [k for k, _ in res], "scores": [s for _, s in res]})
    tv = {"format": "convergedb.test_vectors", "format_version": 1, "model_id": bundle.manifest["model_id"],
          "notes": "prompts: history keys -> rendered prompt -> input_ids ([bos] ++ encode(prompt)). "
                   "recommendations: history = the user's items before the test item (last max_history, "
                   "chronological); exclude_history removes the listed history keys; scores are summed "
                   "natural-log log_softmax (computed in float64 from the float32 logits), batch 1, KV cache; "
                   "with a manifest rerank block (format 3) the beam's candidates re-scored: lm score + "
                   "weight * dot(user_vector, item vector), in float64.",
          "prompts": prompts, "recommendations": recs}
    with open(os.path.join(out, "test_vectors.json"), "w") as f:
        json.dump(tv, f, indent=1)
        f.write("\n")
    return tv


def add_rerank(out, manifest, bundle, ds, sm, vecs, vh, vt, rcfg, log, batch=64):
    """The hybrid re-rank (dense.py): exports SASRec's user encoder as user.onnx, takes the
    beam's candidates on the validation sample, picks the fusion weight with the best
    validation NDCG@10 and makes the bundle format 3 (docs/model-bundle.md)."""
    t = time.time()
    path = os.path.join(out, "user.onnx")
    dense.export(sm, path)
    diff = dense.parity(sm, path, vh[:256], vecs)
    log(f"user.onnx vs SASRec max |user-vector diff|: {diff:.2e}")
    n = int(rcfg.get("candidates", 100))
    rank = {k: i for i, k in enumerate(ds.item_keys)}
    keys = [[ds.item_keys[i] for i in h] for h in vh]
    cands = []
    for s in range(0, len(keys), batch):
        cands.extend([(rank[k], sc) for k, sc in res] for res in bundle.candidates(keys[s:s + batch], n, 20, False))
    users = dense.DenseScorer(path, sm.max_len).user_vectors(vh, vecs)
    weight, table = dense.choose_weight(cands, users, vecs, vt, rcfg.get("grid"))
    if "weight" in rcfg:  # a fixed weight (smoke configurations, so that the fusion is exercised)
        weight = float(rcfg["weight"])
        table.setdefault(weight, float("nan"))
    hit = float(np.mean([t_ in {i for i, _ in c} for c, t_ in zip(cands, vt)]))
    log(f"re-rank: {n} candidates (validation recall@{n} {hit:.4f}), weight {weight}: "
        f"valid ndcg@10 {table[weight]:.4f} vs beam alone {table[0.0]:.4f}; grid {table}")
    manifest["format_version"] = 3
    manifest["files"]["user"] = "user.onnx"
    manifest["sha256"]["user.onnx"] = sha(path)
    manifest["rerank"] = {"vector": "sasrec", "weight": weight, "candidates": n, "max_history": sm.max_len,
                          "score": "lm + weight * dot(user_vector, item_vector)"}
    manifest["model_id"] = bundle_id.model_id(out, manifest)  # format 3: names the re-rank too
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    return {"user_onnx_max_abs_diff": diff, "candidates": n, "weight": weight, f"valid_recall@{n}": hit,
            "valid_ndcg@10_by_weight": {str(w): v for w, v in table.items()}, "seconds": time.time() - t}


def cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def pick_device(name):
    if name in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: torch.cuda.is_available() is false")
    return name


def slug(name):
    return "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in name.lower()).strip("-") or "dataset"


def codes_per_level(c, num_items):
    """C, or for "auto" the power of two nearest to num_items / 40 within [16, 256]: about 40
    items per first-level code, what the hand-picked C = 32 (ML-100K, 1,681 items) and the
    paper's C = 256 (Instruments, 9,922 items) both give; enough items per code for k-means on
    the residuals of the next level, and C^4 far above the number of items."""
    if c != "auto":
        return int(c)
    return int(min(256, max(16, 2 ** round(np.log2(max(num_items, 1) / 40)))))


def valid_sample(split, n, seed=0):
    """A fixed sample of users (sorted indices) whose validation targets select the checkpoint."""
    users = len(split.valid_target)
    if not n or n >= users:
        return list(range(users))
    return sorted(np.random.default_rng(seed).choice(users, n, replace=False).tolist())


def run(args):
    with open(args.config) as f:
        cfg = json.load(f)
    threads = args.threads or cfg.get("threads") or cores()
    torch.set_num_threads(threads)
    device = pick_device(args.device or cfg.get("device"))
    t_all = time.time()
    ds = D.load(args.format, args.data, args.name)
    cfg.setdefault("model_id_prefix", slug(ds.name))
    log(f"dataset {ds.name} ({args.data}), device {device}, {threads} threads")
    if cfg.get("max_users"):  # smoke configurations train on a prefix of the users
        ds.user_keys, ds.histories = ds.user_keys[:cfg["max_users"]], ds.histories[:cfg["max_users"]]
    log(D.report_text(ds))
    split = D.split_loo(ds.histories, cfg["max_history"])
    os.makedirs(args.out, exist_ok=True)
    D.write_split(os.path.join(args.out, "split.json"), ds, split)
    minilm = MiniLM(args.minilm)
    has_text = any(t is not None for t in ds.titles)
    text_emb = None
    if has_text and cfg.get("align_weight", 0.5) > 0:
        t = time.time()
        texts = [ds.item_text(i) or "" for i in range(ds.num_items)]
        cache = os.path.join(args.cache, "text-emb-" + hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16] + ".npy")
        if os.path.exists(cache):
            text_emb = np.load(cache)
        else:
            text_emb = minilm.encode(texts)
            os.makedirs(args.cache, exist_ok=True)
            np.save(cache, text_emb)
        log(f"MiniLM text embeddings: {text_emb.shape} in {time.time() - t:.0f}s")
    extra = {"config": cfg, "data": {"path": os.path.basename(os.path.abspath(args.data)), "format": args.format,
                                     "name": ds.name},
             "device": device, "threads": threads,
             "skipped": {k: (len(v) if isinstance(v, list) else v) for k, v in ds.report.items()}}
    # behavioural embeddings
    sm, sinfo = sasrec.train(ds.num_items, split.train, split.valid_history, split.valid_target, cfg["sasrec"], log,
                             device=device)
    vecs = sasrec.item_vectors(sm)
    extra["sasrec"] = sinfo
    metrics = {"sasrec": rank_metrics(sasrec.topk(sm, split.test_history), split.test_target),
               "sasrec_exclude_history": rank_metrics(sasrec.topk(sm, split.test_history, exclude=split.test_history),
                                                      split.test_target)}
    metrics["popularity"] = rank_metrics([popularity_topk(split, ds.num_items)] * len(split.test_target), split.test_target)
    log(f"sasrec test {metrics['sasrec']}  popularity {metrics['popularity']}")
    # tokenization
    L = cfg["rqvae"].get("levels", 4)
    if args.tokenization == "index":
        if not ds.index_path:
            raise SystemExit(f"--tokenization index: {args.data} has no NAME.index.json")
        args.tokenization = ds.index_path
    if args.tokenization:
        tok_dict = tkz.read(args.tokenization)
        C, L = tok_dict["codes"], tok_dict["levels"]
        codes = np.array([tok_dict["items"].get(k, [0] * L) for k in ds.item_keys])
        missing = [k for k in ds.item_keys if k not in tok_dict["items"]]
        if missing:
            raise SystemExit(f"{args.tokenization}: {len(missing)} items have no codes, e.g. {missing[:5]}")
        extra["rqvae"] = {"source": args.tokenization}
        keys = set(tok_dict["items"]) <= set(ds.item_keys)
        if tok_dict.get("codebooks") and tok_dict.get("vector") == "sasrec" and keys and not tkz.check_greedy(
                tok_dict, {k: vecs[i] for i, k in enumerate(ds.item_keys)}):
            log(f"WARNING: {args.tokenization}'s codebooks give other codes to this run's SASRec vectors "
                "(SASRec is retrained and not bit-identical across runs): the bundle's items.jsonl will not match "
                "its tokenization and `validate` will refuse it; give it the SASRec half of the tokenization's own "
                "bundle with `python -m convergedb_train.swap_dense`")
            extra["rqvae"]["vectors_match_codebooks"] = False
    else:
        C = codes_per_level(cfg["rqvae"]["codes"], ds.num_items)
        layers, cb, codes, rinfo = rqvae.train(vecs, text_emb, {**cfg["rqvae"], "codes": C,
                                                                "align_weight": cfg.get("align_weight", 0.5)}, log)
        tok_dict = tkz.make(L, C, {k: codes[i] for i, k in enumerate(ds.item_keys)}, vector="sasrec",
                            encoder_layers=layers, codebooks=cb,
                            source=f"convergedb_train RQ-VAE over SASRec vectors, text alignment weight "
                                   f"{rinfo['align_weight']}, greedy float32 assignment")
        assert tkz.check_greedy(tok_dict, {k: vecs[i] for i, k in enumerate(ds.item_keys)})
        extra["rqvae"] = rinfo
    # tokenizer
    templates = cfg.get("templates") or TEMPLATES[ds.domain]
    corpus = [t.replace("{history}", "").replace("{text}", "").replace("{query}", "") for t in templates.values()]
    corpus += [ds.item_text(i) for i in range(ds.num_items) if ds.item_text(i)]
    corpus += train_lm.query_vocab(ds) + [SEP]
    tok_text, keep, vinfo = vocab.build(os.path.join(args.minilm, "tokenizer.json"), corpus, L, C)
    from tokenizers import Tokenizer
    tokenizer = Tokenizer.from_str(tok_text)
    log(f"tokenizer: {vinfo}")
    lmcfg = {**cfg["lm"], "max_positions": cfg["lm"].get("max_positions", 256)}
    crp = train_lm.Corpus(ds, split, codes, tokenizer, vinfo, templates, SEP, cfg["max_history"], L, C)
    # the composed prompt ids must equal tokenizing the rendered prompt
    for u in range(3):
        h = split.test_history[u]
        assert crp.render_ids(h) == [vinfo["bos"]] + tokenizer.encode(crp.render_text(h), add_special_tokens=False).ids
    init = init_embeddings(minilm, keep, lmcfg["d_model"]) if cfg.get("init_from_minilm", True) else None
    vs = valid_sample(split, lmcfg.get("valid_users", 1000))
    vh, vt = [split.valid_history[u] for u in vs], [split.valid_target[u] for u in vs]
    validate = None
    if lmcfg.get("valid_users", 1000):
        validate = lambda m: search.evaluate(m, crp, vh, vt)
    out = args.out
    os.makedirs(out, exist_ok=True)
    model, linfo = train_lm.train(crp, lmcfg, log, init, device, validate, os.path.join(out, "lm_curves"))
    linfo["valid_users"] = len(vs) if validate else 0
    extra["lm"] = linfo
    manifest = build_bundle(out, ds, split, codes, tok_dict, tok_text, vinfo, model, cfg, vecs, templates, extra)
    prompts = [crp.render_ids(split.test_history[u][-n:]) for u, n in ((0, 20), (1, 3), (2, 1), (3, 12))]
    diffs = E.parity_v2(model, os.path.join(out, "prefill.onnx"), os.path.join(out, "decode.onnx"), prompts,
                        vinfo["pad"], vinfo["first_token_id"], tok_dict["levels"] * tok_dict["codes"],
                        beams=4, steps=tok_dict["levels"] - 1)
    log(f"ONNX vs torch max |ID-token log-prob diff|: {diffs}")
    extra["onnx_max_abs_logit_diff"] = diffs
    bundle = serve_ref.Bundle(out, verify=False)
    rcfg = cfg.get("rerank", {"candidates": 100})
    if rcfg and rcfg.get("candidates") and validate:
        extra["rerank"] = add_rerank(out, manifest, bundle, ds, sm, vecs, vh, vt, rcfg, log)
        bundle = serve_ref.Bundle(out, verify=False)
    t = time.time()
    th, tt = split.test_history, split.test_target
    metrics["lm"] = lm_metrics(bundle, ds, th, tt, exclude=False)
    metrics["lm_exclude_history"] = lm_metrics(bundle, ds, th, tt, exclude=True)
    if bundle.rerank:
        metrics["lm_beam"] = lm_metrics(bundle, ds, th, tt, exclude=False, rerank=False)
        metrics["lm_beam_exclude_history"] = lm_metrics(bundle, ds, th, tt, exclude=True, rerank=False)
    extra["eval_seconds"] = time.time() - t
    log(f"LM test {metrics['lm']} (exclude history: {metrics['lm_exclude_history']}); "
        f"beam alone {metrics.get('lm_beam')}")
    if cfg.get("ablation"):
        acfg = {**lmcfg, "tasks": ["sequential"]}
        am, ainfo = train_lm.train(crp, acfg, log, init, device, validate, os.path.join(out, "lm_sequential_only_curves"))
        tmp = os.path.join(args.cache, "ablation-" + os.path.basename(os.path.abspath(out)))  # not shipped
        build_bundle(tmp, ds, split, codes, tok_dict, tok_text, vinfo, am, cfg, vecs, templates, {})
        metrics["lm_sequential_only"] = lm_metrics(serve_ref.Bundle(tmp, verify=False), ds, split.test_history, split.test_target)
        extra["ablation"] = ainfo
        log(f"ablation (sequential only) test {metrics['lm_sequential_only']}")
    extra["metrics_test"] = metrics
    extra["total_seconds"] = time.time() - t_all
    manifest["training"] = extra
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    test_vectors(out, serve_ref.Bundle(out, verify=False), ds, split, n_users=cfg.get("test_vector_users", 200))
    finish_manifest(out, manifest)
    serve_ref.Bundle(out, verify=True)
    log(f"bundle written to {out} ({sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out)) / 1e6:.1f} MB), "
        f"total {time.time() - t_all:.0f}s")
    return manifest


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="dataset folder or file")
    ap.add_argument("--format", default="auto", choices=["auto", *D.FORMATS])
    ap.add_argument("--name", help="the dataset's file stem, when the folder holds several")
    ap.add_argument("--dataset", choices=["ml100k", "instruments"], help=argparse.SUPPRESS)  # old spelling: ignored
    ap.add_argument("--device", help="auto (cuda when torch.cuda.is_available()), cpu, cuda, cuda:N")
    ap.add_argument("--threads", type=int, help="torch threads (default: the config's, else every core)")
    ap.add_argument("--minilm", required=True, help="folder with model.safetensors, tokenizer.json, config.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--cache", default=os.path.join(os.path.dirname(__file__), "..", "..", ".cache", "train"),
                    help="where MiniLM item embeddings are cached")
    ap.add_argument("--tokenization", help="use this tokenization (convergedb sid-export or LC-Rec index.json; "
                    "'index': the dataset's own NAME.index.json) instead of training one")
    run(ap.parse_args())


if __name__ == "__main__":
    main()
