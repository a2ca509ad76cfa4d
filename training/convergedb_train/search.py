"""The bundle's trie-constrained beam search (serve_ref.Bundle.beam_search, the same code) run
on a PyTorch model that is still training: the format-2 prefill / shared-prefix decoding
wrappers of lm.py (exactly what export.py turns into the two graphs) behind the interface of
export.SharedPrefixSessions. Used for validation (early stopping) without an ONNX export."""
from __future__ import annotations

import numpy as np
import torch

from .export import positions
from .lm import DecodeWrapper, PrefillWrapper
from .metrics import rank_metrics
from .serve_ref import Bundle, SharedPrefixDecoder, Trie


class TorchSessions:
    def __init__(self, model, id_start, id_count):
        self.dev = model.tok.weight.device
        self.pre = PrefillWrapper(model, id_start, id_count)
        self.dec = DecodeWrapper(model, id_start, id_count)
        self.nl = len(model.blocks)

    def _t(self, a):
        return a if torch.is_tensor(a) else torch.from_numpy(np.ascontiguousarray(a)).to(self.dev)

    @torch.no_grad()
    def prefill(self, ids, mask):
        out = self.pre(self._t(ids), self._t(mask), self._t(positions(mask, ids.shape[1])))
        return out[0].float().cpu().numpy(), out[1].float().cpu().numpy(), list(out[2:])

    @torch.no_grad()
    def decode(self, tokens, pos, prefix_mask, prefix, past):
        past = [self._t(p) for p in past]
        out = self.dec(self._t(tokens), self._t(pos), self._t(prefix_mask), *prefix, *past)
        return out[0].float().cpu().numpy(), out[1].float().cpu().numpy(), [p.cpu().numpy() for p in out[2:]]


class ModelRecommender(Bundle):
    """A Bundle (its recommend / beam_search) over a torch model and a train_lm.Corpus; item
    keys are the corpus's item indices."""

    def __init__(self, model, corpus):  # noqa: the Bundle reads files; this one does not
        self.L, self.C = corpus.L, corpus.C
        self.first = corpus.v["first_token_id"]
        self.bos, self.pad = corpus.v["bos"], corpus.v["pad"]
        self.corpus = corpus
        self.codes = {i: [int(c) for c in cs] for i, cs in enumerate(corpus.codes)}
        by_tuple = {}
        for i in range(len(corpus.codes)):
            by_tuple.setdefault(tuple(self.codes[i]), []).append(i)
        self.by_tuple = by_tuple
        self.trie = Trie(list(by_tuple), self.C)
        self.format, self.strategy = 2, "shared_prefix"
        self.rerank = None  # validation of the LM alone
        self.sessions = TorchSessions(model, self.first, self.L * self.C)

    def prompt_ids(self, history):
        return self.corpus.render_ids(history[-self.corpus.H:])

    def decoder(self, kv_cache=True):
        return SharedPrefixDecoder(self.sessions, self.first, self.L * self.C, self.first, "shared_prefix")


def evaluate(model, corpus, histories, targets, beam=20, k=10, batch=128, exclude=False):
    """Recall/NDCG@5/10 of the constrained beam search (beam 20, top 10, history kept by default:
    the LC-Rec protocol) of `model` on these users."""
    was = model.training
    model.eval()
    rec = ModelRecommender(model, corpus)
    topk = []
    for s in range(0, len(histories), batch):
        for res in rec.recommend([list(h) for h in histories[s:s + batch]], k, beam, exclude):
            topk.append([i for i, _ in res])
    model.train(was)
    return rank_metrics(topk, targets)
