"""Goal: the exported graph has the contract's names and matches PyTorch.
Method: a tiny random GPT exported to ONNX and compared with torch on left-padded prefill,
KV-cache increments and the no-cache path."""
import numpy as np
import onnxruntime as ort
import torch

from convergedb_train import export as E
from convergedb_train.lm import GPT


def test_onnx_parity_and_names(tmp_path):
    torch.manual_seed(0)
    m = GPT(50, d=16, layers=2, heads=2, max_pos=64, dropout=0.5).eval()
    with torch.no_grad():  # large weights, so that a wrong mask shows in the logits
        for prm in m.parameters():
            prm.normal_(0, 0.5)
    p = str(tmp_path / "m.onnx")
    E.export(m, p)
    s = ort.InferenceSession(p, providers=["CPUExecutionProvider"])
    assert [i.name for i in s.get_inputs()] == ["input_ids", "attention_mask", "position_ids",
                                                "past_key_values.0.key", "past_key_values.0.value",
                                                "past_key_values.1.key", "past_key_values.1.value"]
    assert [o.name for o in s.get_outputs()] == ["logits", "present.0.key", "present.0.value",
                                                 "present.1.key", "present.1.value"]
    # exported with past 2 / seq 3: prefill (past 0) and longer prompts must still be right
    d = E.parity(m, p, [[1, 5, 7, 9, 11, 3, 8, 2, 1, 1, 4], [1, 4], [1, 2, 3]], pad=0, steps=3)
    assert d["prefill"] < 1e-4 and d["incremental"] < 1e-4 and d["no_cache"] < 1e-4, d


def test_left_padding_does_not_change_logits():
    torch.manual_seed(0)
    m = GPT(50, d=16, layers=1, heads=2, max_pos=64, dropout=0.0).eval()
    ids, mask = E.left_pad([[1, 2, 3], [1, 2, 3, 4, 5]], 0)
    pos = E.positions(mask, ids.shape[1])
    with torch.no_grad():
        a, _ = m(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(pos))
        b, _ = m(torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.long), torch.arange(3)[None])
    assert torch.allclose(a[0, -1], b[0, -1], atol=1e-5)


def test_format_2_graphs_match_torch(tmp_path):
    torch.manual_seed(0)
    m = GPT(50, d=16, layers=2, heads=2, max_pos=64, dropout=0.5).eval()
    with torch.no_grad():
        for prm in m.parameters():
            prm.normal_(0, 0.5)
    pre, dec = str(tmp_path / "p.onnx"), str(tmp_path / "d.onnx")
    E.export_v2(m, pre, dec, 30, 20)
    pi, po, di, do = E.names_v2(2)
    s = ort.InferenceSession(pre, providers=["CPUExecutionProvider"])
    assert [i.name for i in s.get_inputs()] == pi and [o.name for o in s.get_outputs()] == po
    s = ort.InferenceSession(dec, providers=["CPUExecutionProvider"])
    assert [i.name for i in s.get_inputs()] == di and [o.name for o in s.get_outputs()] == do
    # exported with 2 users x 3 beams over a 5-token prompt: other shapes must be right too
    prompts = [[1, 5, 7, 9, 11, 3, 8, 2, 1, 1, 4], [1, 4], [1, 2, 3]]
    for beams in (1, 4):
        d = E.parity_v2(m, pre, dec, prompts, 0, 30, 20, beams=beams, steps=3)
        assert d["prefill"] < 1e-4 and d["decode"] < 1e-4, d
