"""Decoder-only causal LM (pre-LN GPT, learned positions, tied embeddings) with the KV-cache
interface of the bundle's ONNX graph (docs/model-bundle.md)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

NEG = -1e9  # finite, so a fully masked (left-padding) row gives no NaN
OUT_MASK = -1e4  # output bias of tokens the model may not generate (restrict_output)


class _Attention(torch.autograd.Function):
    """dropout(softmax(q k^T * scale + bias)) v for training, with every matrix product on
    contiguous operands in both passes. Debian's torch 1.13 (BLAS_INFO=generic) multiplies 4-d
    tensors with a transposed operand 4-10x slower than contiguous ones (measured: an attention
    layer's forward + backward 340 ms -> 80 ms at batch 32 x 115 tokens), and autograd's backward
    of `q @ k.transpose(-1, -2)` is made of such products. Same function as the plain path
    (tests/test_train.py compares the gradients); export and evaluation use the plain path."""

    @staticmethod
    def forward(ctx, q, k, v, bias, scale, p_drop):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        p = torch.softmax(torch.matmul(q, k.transpose(-1, -2).contiguous()) * scale + bias, dim=-1)
        keep = None
        if p_drop > 0:
            keep = (torch.rand_like(p) >= p_drop).to(p.dtype) * (1.0 / (1.0 - p_drop))
        ctx.save_for_backward(q, k, v, p)
        ctx.keep, ctx.scale = keep, scale
        return torch.matmul(p if keep is None else p * keep, v)

    @staticmethod
    def backward(ctx, g):
        q, k, v, p = ctx.saved_tensors
        keep, scale = ctx.keep, ctx.scale
        g = g.contiguous()
        pd = p if keep is None else p * keep
        dv = torch.matmul(pd.transpose(-1, -2).contiguous(), g)
        dp = torch.matmul(g, v.transpose(-1, -2).contiguous())
        if keep is not None:
            dp = dp * keep
        ds = p * (dp - (dp * p).sum(-1, keepdim=True)) * scale
        dq = torch.matmul(ds, k)
        dk = torch.matmul(ds.transpose(-1, -2).contiguous(), q)
        return dq, dk, dv, None, None, None


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
        if self.training and torch.is_grad_enabled() and not torch.jit.is_tracing():
            y = _Attention.apply(q, k, v, bias, self.scale, self.drop.p)
        else:
            att = torch.softmax(q @ k.transpose(-1, -2) * self.scale + bias, dim=-1)
            y = self.drop(att) @ v
        y = y.transpose(1, 2).reshape(B, T, D)
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
        # Added to the output logits. Zero, or (`restrict_output`) OUT_MASK outside the ID
        # tokens: the next-token distribution is then a softmax over the ID tokens only, and the
        # full-vocabulary log-sum-exp the graphs export equals the ID tokens' one (exp(-1e4) = 0
        # in float32), so training on ID logits alone is exact for what the bundle serves.
        self.register_buffer("out_bias", torch.zeros(vocab))
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
        z = torch.zeros(batch, H, 0, hd, device=self.tok.weight.device)
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

    def restrict_output(self, start, count):
        """Only tokens start..start+count-1 (the ID tokens) can be generated."""
        with torch.no_grad():
            self.out_bias.fill_(OUT_MASK)
            self.out_bias[start:start + count] = 0.0

    def logits(self, h):
        return h @ self.tok.weight.T + self.out_bias

    def id_logits(self, h, start, count):
        """The logits of tokens start..start+count-1 only (what training needs when every target
        is an ID token and the output is restricted to them)."""
        return h @ self.tok.weight[start:start + count].T + self.out_bias[start:start + count]

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


def _ids_head(model, h, id_start, id_count):
    """Logits of the ID tokens and the log-sum-exp over the whole vocabulary: `h` [R, d] ->
    ([R, id_count], [R]). Exact: the ID logits are a slice of the full logits."""
    logits = model.logits(h)
    # max + log(sum(exp(x - max))) spelled out: ONNX Runtime's ReduceLogSumExp kernel is about
    # 10x slower on CPU than these four vectorised ops (measured: 6.6 ms vs 0.6 ms for 320 rows)
    m = logits.amax(-1, keepdim=True)
    lse = (m + torch.log(torch.exp(logits - m).sum(-1, keepdim=True)))[:, 0]
    return logits[:, id_start:id_start + id_count], lse


class PrefillWrapper(nn.Module):
    """Bundle format 2, `prefill.onnx`: input_ids, attention_mask, position_ids (left-padded
    prompts) -> id_logits [B, N] and logsumexp [B] of the last position only, present.{i}.key
    /value [B, H, T, hd] (the prompt's cache, fed to every beam of the user by decode.onnx)."""

    def __init__(self, model, id_start, id_count):
        super().__init__()
        self.m, self.id_start, self.id_count = model, id_start, id_count

    def forward(self, input_ids, attention_mask, position_ids):
        h, presents = self.m.hidden(input_ids, attention_mask, position_ids)
        ids, lse = _ids_head(self.m, h[:, -1], self.id_start, self.id_count)
        out = [ids, lse]
        for k, v in presents:
            out += [k, v]
        return tuple(out)


def shared_prefix_step(model, input_ids, position_ids, prefix_mask, prefix, past):
    """One decoding step of R = B * W beam rows (row r belongs to user r // W) against each
    user's prompt cache `prefix` [(k, v) of [B, H, T, hd]] (one copy per user: the W beams of
    a user are the query rows of one matrix product against it) and the rows' own decoded
    tokens `past` [(k, v) of [R, H, S, hd]]. Exactly the full causal attention over prompt +
    decoded tokens, with the softmax split in two parts. Returns (h [R, d], presents of
    [R, H, S + 1, hd])."""
    x = model.tok(input_ids) + model.pos(position_ids)  # [R, 1, d]
    R = input_ids.shape[0]
    B = prefix_mask.shape[0]
    bias = ((1.0 - (prefix_mask > 0).to(torch.float32)) * NEG).unsqueeze(1).unsqueeze(2)  # [B, 1, 1, T]
    presents = []
    for blk, (pk, pv), (lk, lv) in zip(model.blocks, prefix, past):
        H, hd, D = blk.heads, blk.hd, blk.d
        q, k, v = blk.qkv(blk.ln1(x)).split(D, dim=2)
        q = q.reshape(R, H, 1, hd)
        k = torch.cat([lk, k.reshape(R, H, 1, hd)], dim=2)  # [R, H, S+1, hd]
        v = torch.cat([lv, v.reshape(R, H, 1, hd)], dim=2)
        qg = q.reshape(B, -1, H, hd).transpose(1, 2)  # [B, H, W, hd]
        s_pre = qg @ pk.transpose(-1, -2) * blk.scale + bias  # [B, H, W, T]
        s_loc = (q @ k.transpose(-1, -2) * blk.scale)  # [R, H, 1, S+1]
        s_loc_g = s_loc.reshape(B, -1, H, s_loc.shape[-1]).transpose(1, 2)  # [B, H, W, S+1]
        m = torch.maximum(s_pre.amax(-1, keepdim=True), s_loc_g.amax(-1, keepdim=True))
        e_pre = torch.exp(s_pre - m)
        e_loc_g = torch.exp(s_loc_g - m)
        z = e_pre.sum(-1, keepdim=True) + e_loc_g.sum(-1, keepdim=True)  # [B, H, W, 1]
        o_pre = e_pre @ pv  # [B, H, W, hd]
        e_loc = e_loc_g.transpose(1, 2).reshape(R, H, 1, -1)  # [R, H, 1, S+1]
        o_loc = (e_loc @ v).reshape(B, -1, H, hd).transpose(1, 2)  # [B, H, W, hd]
        y = ((o_pre + o_loc) / z).transpose(1, 2).reshape(R, 1, D)
        x = x + blk.proj(y)
        x = x + blk.fc2(F.gelu(blk.fc1(blk.ln2(x))))
        presents.append((k, v))
    return model.ln_f(x)[:, 0], presents


class DecodeWrapper(nn.Module):
    """Bundle format 2, `decode.onnx`: input_ids [R, 1], position_ids [R, 1],
    prefix_attention_mask [B, T], prefix_key_values.{i}.key/value [B, H, T, hd],
    past_key_values.{i}.key/value [R, H, S, hd] (R = B * W) -> id_logits [R, N], logsumexp [R],
    present.{i}.key/value [R, H, S + 1, hd]."""

    def __init__(self, model, id_start, id_count):
        super().__init__()
        self.m, self.id_start, self.id_count = model, id_start, id_count

    def forward(self, input_ids, position_ids, prefix_attention_mask, *flat):
        n = len(self.m.blocks)
        prefix = [(flat[2 * i], flat[2 * i + 1]) for i in range(n)]
        past = [(flat[2 * n + 2 * i], flat[2 * n + 2 * i + 1]) for i in range(n)]
        h, presents = shared_prefix_step(self.m, input_ids, position_ids, prefix_attention_mask, prefix, past)
        ids, lse = _ids_head(self.m, h, self.id_start, self.id_count)
        out = [ids, lse]
        for k, v in presents:
            out += [k, v]
        return tuple(out)
