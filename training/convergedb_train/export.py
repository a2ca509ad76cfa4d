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
    # compare the tokens the model can generate: with a restricted output (GPT.restrict_output)
    # the others sit at -1e4, where float32 rounding alone is 1e-3
    cols = (model.out_bias == 0).numpy() if hasattr(model, "out_bias") else np.ones(c["vocab"], bool)
    with torch.no_grad():
        tl, tp = model(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(feeds["position_ids"]))
        real = mask.astype(bool)
        diffs["prefill"] = float(np.abs(res[0] - tl.numpy())[real][:, cols].max())
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
            diffs["incremental"] = max(diffs["incremental"], float(np.abs(res[0][:, -1] - fl.numpy()[:, -1])[:, cols].max()))
            # no-cache: the whole sequence through ONNX with past length 0
            feeds = {"input_ids": full, "attention_mask": mask, "position_ids": positions(mask, full.shape[1])}
            for n in ins[3:]:
                feeds[n] = np.zeros((B, H, 0, hd), np.float32)
            r2 = sess.run(None, feeds)
            diffs["no_cache"] = max(diffs["no_cache"], float(np.abs(r2[0][:, -1] - res[0][:, -1])[:, cols].max()))
    return diffs


# --- bundle format 2: shared-prefix decoding (docs/model-bundle.md, "Format 2") ---

def names_v2(num_layers):
    """(prefill inputs, prefill outputs, decode inputs, decode outputs)."""
    pre_in = ["input_ids", "attention_mask", "position_ids"]
    cache = []
    for i in range(num_layers):
        cache += [f"present.{i}.key", f"present.{i}.value"]
    pre_out = ["id_logits", "logsumexp"] + cache
    dec_in = ["input_ids", "position_ids", "prefix_attention_mask"]
    for i in range(num_layers):
        dec_in += [f"prefix_key_values.{i}.key", f"prefix_key_values.{i}.value"]
    for i in range(num_layers):
        dec_in += [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
    dec_out = ["id_logits", "logsumexp"] + cache
    return pre_in, pre_out, dec_in, dec_out


def export_v2(model, prefill_path, decode_path, id_start, id_count):
    """Writes the two graphs of a format-2 bundle (opset 17) and checks them with onnx."""
    from .lm import DecodeWrapper, PrefillWrapper
    import onnx

    model = model.eval()
    c = model.cfg
    H, hd, nl = c["heads"], c["d"] // c["heads"], c["layers"]
    pre_in, pre_out, dec_in, dec_out = names_v2(nl)
    B, T = 2, 5
    args = (torch.ones(B, T, dtype=torch.long), torch.ones(B, T, dtype=torch.long),
            torch.arange(T).unsqueeze(0).repeat(B, 1))
    dyn = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
           "position_ids": {0: "batch", 1: "seq"}, "id_logits": {0: "batch"}, "logsumexp": {0: "batch"}}
    for n in pre_out[2:]:
        dyn[n] = {0: "batch", 2: "seq"}
    with torch.no_grad():
        torch.onnx.export(PrefillWrapper(model, id_start, id_count).eval(), args, prefill_path,
                          input_names=pre_in, output_names=pre_out, dynamic_axes=dyn, opset_version=17,
                          do_constant_folding=True)
    W, S = 3, 2
    R = B * W
    args = [torch.ones(R, 1, dtype=torch.long), torch.full((R, 1), T, dtype=torch.long),
            torch.ones(B, T, dtype=torch.long)]
    args += [torch.zeros(B, H, T, hd) for _ in range(2 * nl)]
    args += [torch.zeros(R, H, S, hd) for _ in range(2 * nl)]
    dyn = {"input_ids": {0: "rows"}, "position_ids": {0: "rows"},
           "prefix_attention_mask": {0: "users", 1: "prefix"}, "id_logits": {0: "rows"}, "logsumexp": {0: "rows"}}
    for n in dec_in[3:3 + 2 * nl]:
        dyn[n] = {0: "users", 2: "prefix"}
    for n in dec_in[3 + 2 * nl:]:
        dyn[n] = {0: "rows", 2: "past"}
    for n in dec_out[2:]:
        dyn[n] = {0: "rows", 2: "total"}
    with torch.no_grad():
        torch.onnx.export(DecodeWrapper(model, id_start, id_count).eval(), tuple(args), decode_path,
                          input_names=dec_in, output_names=dec_out, dynamic_axes=dyn, opset_version=17,
                          do_constant_folding=True)
    for p in (prefill_path, decode_path):
        onnx.checker.check_model(onnx.load(p))


class SharedPrefixSessions:
    """The two format-2 graphs on onnxruntime, behind the calls the reference search makes."""

    def __init__(self, prefill_path, decode_path, num_layers, threads=0, providers=None):
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        providers = providers or ["CPUExecutionProvider"]
        self.pre = ort.InferenceSession(prefill_path, so, providers=providers)
        self.dec = ort.InferenceSession(decode_path, so, providers=providers)
        self.pre_in, self.pre_out, self.dec_in, self.dec_out = names_v2(num_layers)
        self.nl = num_layers

    def prefill(self, ids, mask):
        """-> (id_logits [B, N], logsumexp [B], prompt cache list of 2 * layers)."""
        pos = positions(mask, ids.shape[1])
        out = self.pre.run(None, {"input_ids": ids, "attention_mask": mask, "position_ids": pos})
        return out[0], out[1], out[2:]

    def decode(self, tokens, pos, prefix_mask, prefix, past):
        """tokens/pos [R, 1] with R = B * W -> (id_logits, logsumexp, new beam-local cache)."""
        feeds = {"input_ids": tokens, "position_ids": pos, "prefix_attention_mask": prefix_mask}
        feeds.update(zip(self.dec_in[3:3 + 2 * self.nl], prefix))
        feeds.update(zip(self.dec_in[3 + 2 * self.nl:], past))
        out = self.dec.run(None, feeds)
        return out[0], out[1], out[2:]


def parity_v2(model, prefill_path, decode_path, prompts, pad, id_start, id_count, beams=3, steps=3, seed=0):
    """Max |log-prob difference| of the ID tokens between the format-2 graphs (shared prefix,
    `beams` rows per user with random tokens) and torch's full causal forward of each row's
    whole sequence."""
    rng = np.random.default_rng(seed)
    model = model.eval()
    c = model.cfg
    H, hd, nl = c["heads"], c["d"] // c["heads"], c["layers"]
    s = SharedPrefixSessions(prefill_path, decode_path, nl)
    ids, mask = left_pad(prompts, pad)
    B, T = ids.shape
    idl, lse, prefix = s.prefill(ids, mask)
    worst = {"prefill": 0.0, "decode": 0.0}

    def torch_lp(seq, m):
        with torch.no_grad():
            lg, _ = model(torch.from_numpy(seq), torch.from_numpy(m), torch.from_numpy(positions(m, seq.shape[1])))
        return torch.log_softmax(lg[:, -1].double(), -1).numpy()[:, id_start:id_start + id_count]

    worst["prefill"] = float(np.abs((idl - lse[:, None]) - torch_lp(ids, mask)).max())
    R = B * beams
    seqs = np.repeat(ids, beams, 0)
    rmask = np.repeat(mask, beams, 0)
    lens = mask.sum(1)
    past = [np.zeros((R, H, 0, hd), np.float32) for _ in range(2 * nl)]
    for step in range(steps):
        tok = rng.integers(id_start, id_start + id_count, size=(R, 1))
        pos = (np.repeat(lens, beams) + step)[:, None].astype(np.int64)
        idl, lse, past = s.decode(tok, pos, mask, prefix, past)
        seqs = np.concatenate([seqs, tok], 1)
        rmask = np.concatenate([rmask, np.ones((R, 1), np.int64)], 1)
        worst["decode"] = max(worst["decode"], float(np.abs((idl - lse[:, None]) - torch_lp(seqs, rmask)).max()))
    return worst
