"""Decoder-only causal LM (pre-LN GPT, learned positions, tied embeddings) with the KV-cache
interface of the bundle's ONNX graph (docs/model-bundle.md)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

NEG = -1e9  # finite, so a fully masked (left-padding) row gives no NaN


class Block(nn.Module):
    def __init__(self, d, heads, dropout):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.heads, self.drop = heads, nn.Dropout(dropout)
        self.d, self.hd = d, d // heads
        self.scale = 1.0 / math.sqrt(d // heads)  # plain Python numbers: nothing shape-derived is traced

    def forward(self, x, bias, past_k, past_v):
        B, T = x.shape[0], x.shape[1]
        H, hd, D = self.heads, self.hd, self.d
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q = q.view(B, T, H, hd).transpose(1, 2)
        k = torch.cat([past_k, k.view(B, T, H, hd).transpose(1, 2)], dim=2)
        v = torch.cat([past_v, v.view(B, T, H, hd).transpose(1, 2)], dim=2)
        att = torch.softmax(q @ k.transpose(-1, -2) * self.scale + bias, dim=-1)
        y = (self.drop(att) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.drop(self.proj(y))
        x = x + self.drop(self.fc2(F.gelu(self.fc1(self.ln2(x)))))
        return x, k, v


class GPT(nn.Module):
    def __init__(self, vocab, d=128, layers=2, heads=4, max_pos=256, dropout=0.1):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(max_pos, d)
        self.blocks = nn.ModuleList(Block(d, heads, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)
        self.cfg = dict(vocab=vocab, d=d, layers=layers, heads=heads, max_pos=max_pos)
        nn.init.normal_(self.tok.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.01)
        for b in self.blocks:
            for l in (b.qkv, b.proj, b.fc1, b.fc2):
                nn.init.normal_(l.weight, std=0.02)
                nn.init.zeros_(l.bias)
            nn.init.normal_(b.proj.weight, std=0.02 / math.sqrt(2 * layers))
            nn.init.normal_(b.fc2.weight, std=0.02 / math.sqrt(2 * layers))

    def empty_past(self, batch):
        H = self.cfg["heads"]
        hd = self.cfg["d"] // H
        z = torch.zeros(batch, H, 0, hd)
        return [(z, z) for _ in self.blocks]

    def hidden(self, input_ids, attention_mask, position_ids, past=None):
        """Returns (final hidden states [B, T, d], presents [(k, v)] per layer)."""
        B, T = input_ids.shape
        if past is None:
            past = self.empty_past(B)
        # causal rule "key j <= past + query i", written as distances from the end so that no
        # shape arithmetic is traced into ONNX constants: (K-1-j) >= (T-1-i)
        kones = torch.ones_like(attention_mask[0])
        qones = torch.ones_like(input_ids[0])
        kdist = kones.sum() - kones.cumsum(0)
        qdist = qones.sum() - qones.cumsum(0)
        allowed = (kdist.unsqueeze(0) >= qdist.unsqueeze(1)).unsqueeze(0) & (attention_mask.unsqueeze(1) > 0)
        bias = (1.0 - allowed.to(torch.float32)).unsqueeze(1) * NEG  # [B, 1, T, K]
        x = self.drop(self.tok(input_ids) + self.pos(position_ids))
        presents = []
        for blk, (pk, pv) in zip(self.blocks, past):
            x, k, v = blk(x, bias, pk, pv)
            presents.append((k, v))
        return self.ln_f(x), presents

    def logits(self, h):
        return h @ self.tok.weight.T

    def forward(self, input_ids, attention_mask, position_ids, past=None):
        h, presents = self.hidden(input_ids, attention_mask, position_ids, past)
        return self.logits(h), presents


class OnnxWrapper(nn.Module):
    """Flat inputs/outputs in the bundle's order: input_ids, attention_mask, position_ids,
    past_key_values.{i}.key/value -> logits, present.{i}.key/value."""

    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, input_ids, attention_mask, position_ids, *past_flat):
        past = [(past_flat[2 * i], past_flat[2 * i + 1]) for i in range(len(past_flat) // 2)]
        logits, presents = self.m(input_ids, attention_mask, position_ids, past)
        out = [logits]
        for k, v in presents:
            out += [k, v]
        return tuple(out)
