"""ONNX export (opset 17, one graph for prefill and incremental steps) and its parity check."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from .lm import OnnxWrapper


def names(num_layers):
    ins = ["input_ids", "attention_mask", "position_ids"]
    outs = ["logits"]
    for i in range(num_layers):
        ins += [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
        outs += [f"present.{i}.key", f"present.{i}.value"]
    return ins, outs


def export(model, path):
    model = model.eval()
    c = model.cfg
    H, hd, nl = c["heads"], c["d"] // c["heads"], c["layers"]
    B, T, P = 2, 3, 2
    args = [torch.ones(B, T, dtype=torch.long), torch.ones(B, P + T, dtype=torch.long),
            torch.arange(P, P + T).unsqueeze(0).repeat(B, 1)]
    args += [torch.zeros(B, H, P, hd) for _ in range(2 * nl)]
    ins, outs = names(nl)
    dyn = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total"},
           "position_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
    for n in ins[3:]:
        dyn[n] = {0: "batch", 2: "past"}
    for n in outs[1:]:
        dyn[n] = {0: "batch", 2: "total"}
    with torch.no_grad():
        torch.onnx.export(OnnxWrapper(model).eval(), tuple(args), path, input_names=ins, output_names=outs,
                          dynamic_axes=dyn, opset_version=17, do_constant_folding=True)
    import onnx
    onnx.checker.check_model(onnx.load(path))


def left_pad(seqs, pad):
    T = max(len(s) for s in seqs)
    ids = np.full((len(seqs), T), pad, np.int64)
    mask = np.zeros((len(seqs), T), np.int64)
    for i, s in enumerate(seqs):
        ids[i, T - len(s):] = s
        mask[i, T - len(s):] = 1
    return ids, mask


def positions(mask, new):
    return np.maximum(np.cumsum(mask, 1) - 1, 0)[:, -new:]


def parity(model, path, prompts, pad, steps=4, seed=0):
    """Max |logit difference| between ONNX Runtime and torch: prefill of left-padded prompts,
    then `steps` incremental steps with the KV cache; also the no-cache full forward."""
    rng = np.random.default_rng(seed)
    model = model.eval()
    c = model.cfg
    nl = c["layers"]
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    ins, outs = names(nl)
    ids, mask = left_pad(prompts, pad)
    B = len(prompts)
    H, hd = c["heads"], c["d"] // c["heads"]
    feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": positions(mask, ids.shape[1])}
    for n in ins[3:]:
        feeds[n] = np.zeros((B, H, 0, hd), np.float32)
    res = sess.run(None, feeds)
    diffs = {"prefill": 0.0, "incremental": 0.0, "no_cache": 0.0}
    with torch.no_grad():
        tl, tp = model(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(feeds["position_ids"]))
        real = mask.astype(bool)
        diffs["prefill"] = float(np.abs(res[0] - tl.numpy())[real].max())
        past_o = res[1:]
        full, fmask = ids, mask
        for s in range(steps):
            tok = rng.integers(0, c["vocab"], size=(B, 1))
            mask = np.concatenate([mask, np.ones((B, 1), np.int64)], 1)
            pos = positions(mask, 1)
            feeds = {"input_ids": tok, "attention_mask": mask, "position_ids": pos}
            for n, p in zip(ins[3:], past_o):
                feeds[n] = p
            res = sess.run(None, feeds)
            past_o = res[1:]
            full = np.concatenate([full, tok], 1)
            fl, _ = model(torch.from_numpy(full), torch.from_numpy(mask), torch.from_numpy(positions(mask, full.shape[1])))
            diffs["incremental"] = max(diffs["incremental"], float(np.abs(res[0][:, -1] - fl.numpy()[:, -1]).max()))
            # no-cache: the whole sequence through ONNX with past length 0
            feeds = {"input_ids": full, "attention_mask": mask, "position_ids": positions(mask, full.shape[1])}
            for n in ins[3:]:
                feeds[n] = np.zeros((B, H, 0, hd), np.float32)
            r2 = sess.run(None, feeds)
            diffs["no_cache"] = max(diffs["no_cache"], float(np.abs(r2[0][:, -1] - res[0][:, -1]).max()))
    return diffs
