"""The hybrid re-rank's dense half (issue 14, docs/model-bundle.md "Hybrid re-rank").

The beam search of the LM proposes candidates; a dense score re-ranks them: the SASRec user
vector of the history, dotted with each candidate's stored behavioural vector (the `sasrec`
vectors of items.jsonl, i.e. SASRec's own item table, so the dot product is exactly SASRec's
logit). The bundle carries the user encoder as `user.onnx`:

    inputs  history_vectors float32 [batch, T, dim]  the last T history items' vectors,
                                                     right-aligned (oldest first, newest last)
            history_mask    float32 [batch, T]       1 for an item, 0 for padding (left)
    output  user_vector     float32 [batch, dim]

T is fixed (the manifest's `rerank.max_history`: the positions SASRec was trained with).
The fused score of a candidate is  lm_score + weight * dot(user_vector, item_vector),  with
`weight` chosen on validation. SASRec's log-softmax differs from its logit by a per-user
constant, so this ranks exactly as lm_score + weight * log p_sasrec."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .sasrec import SASRec


class UserEncoder(nn.Module):
    """SASRec's forward written out over input vectors (no item table; plain ops for ONNX)."""

    def __init__(self, m: SASRec):
        super().__init__()
        self.m = m.eval()

    def forward(self, vecs, mask):  # vecs [B, T, d], mask [B, T]
        m = self.m
        T, d = vecs.shape[1], vecs.shape[2]
        x = (vecs * (d ** 0.5) + m.pos.weight[:T][None]) * mask[..., None]
        causal = torch.triu(torch.full((T, T), float("-inf")), 1)
        for layer in m.enc.layers:
            x = x + self._attn(layer, layer.norm1(x), causal)
            h = layer.norm2(x)
            x = x + layer.linear2(torch.relu(layer.linear1(h)))
        return m.ln(x)[:, -1]

    @staticmethod
    def _attn(layer, x, causal):
        a = layer.self_attn
        B, T, d = x.shape
        H = a.num_heads
        hd = d // H
        qkv = x @ a.in_proj_weight.T + a.in_proj_bias
        q, k, v = qkv.split(d, dim=-1)
        q = q.reshape(B, T, H, hd).transpose(1, 2)
        k = k.reshape(B, T, H, hd).transpose(1, 2)
        v = v.reshape(B, T, H, hd).transpose(1, 2)
        w = torch.softmax(q @ k.transpose(-1, -2) / (hd ** 0.5) + causal, dim=-1)
        o = (w @ v).transpose(1, 2).reshape(B, T, d)
        return a.out_proj(o)


def history_inputs(histories, vectors, T):
    """Right-aligned [B, T, d] vectors and [B, T] mask of the last T items of each history
    (item indices into `vectors`)."""
    d = vectors.shape[1]
    x = np.zeros((len(histories), T, d), np.float32)
    mask = np.zeros((len(histories), T), np.float32)
    for i, h in enumerate(histories):
        h = list(h)[-T:]
        if h:
            x[i, T - len(h):] = vectors[np.asarray(h)]
            mask[i, T - len(h):] = 1
    return x, mask


def export(m: SASRec, path):
    enc = UserEncoder(m).eval()
    T, d = m.max_len, m.item.embedding_dim
    args = (torch.zeros(2, T, d), torch.ones(2, T))
    with torch.no_grad():
        torch.onnx.export(enc, args, path, input_names=["history_vectors", "history_mask"],
                          output_names=["user_vector"], opset_version=17, do_constant_folding=True,
                          dynamic_axes={"history_vectors": {0: "batch"}, "history_mask": {0: "batch"},
                                        "user_vector": {0: "batch"}})
    import onnx
    onnx.checker.check_model(onnx.load(path))


class DenseScorer:
    """user.onnx on onnxruntime."""

    def __init__(self, path, max_history, threads=0, providers=None):
        import onnxruntime as ort
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(path, so, providers=providers or ["CPUExecutionProvider"])
        self.T = max_history

    def user_vectors(self, histories, vectors):
        x, mask = history_inputs(histories, vectors, self.T)
        return self.sess.run(None, {"history_vectors": x, "history_mask": mask})[0]


def parity(m: SASRec, path, histories, vectors):
    """Max |difference| between user.onnx and SASRec's own forward (its last-position state)."""
    from .sasrec import _pad
    with torch.no_grad():
        ref = m.eval()(_pad(histories, m.max_len))[:, -1].numpy()
    got = DenseScorer(path, m.max_len).user_vectors(histories, vectors)
    return float(np.abs(ref - got).max())


def fuse(candidates, user_vec, vectors, weight):
    """candidates: [(item index, lm score)] -> [(item index, fused score)] best first (ties:
    the beam's order)."""
    if not candidates:
        return []
    idx = np.asarray([c[0] for c in candidates])
    dense = vectors[idx].astype(np.float64) @ user_vec.astype(np.float64)
    fused = np.asarray([c[1] for c in candidates], np.float64) + weight * dense
    order = sorted(range(len(candidates)), key=lambda j: (-fused[j], j))
    return [(int(idx[j]), float(fused[j])) for j in order]


def choose_weight(cands, user_vecs, vectors, targets, grid=None, k=10):
    """The fusion weight with the best NDCG@k on validation (`cands`: per user the beam's
    [(item index, lm score)]). Returns (weight, {weight: ndcg})."""
    from .metrics import rank_metrics
    grid = grid if grid is not None else [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0]
    table = {}
    for w in grid:
        top = [[i for i, _ in fuse(c, u, vectors, w)[:k]] for c, u in zip(cands, user_vecs)]
        table[w] = rank_metrics(top, targets)[f"ndcg@{k}"]
    best = max(grid, key=lambda w: (table[w], -w))
    return best, table
