"""RQ-VAE over behavioural (SASRec) item embeddings with a text alignment term (stage 1,
"Alignment Tokenization"): the quantised latent, through a linear projection, is pulled
toward the item's MiniLM text embedding (1 - cosine). Codes are the greedy residual
assignment computed in numpy float32 from the exported weights (what the database computes)."""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn as nn

from . import tokenization as tkz


def kmeans(x, k, iters=30, rng=None):
    rng = rng or np.random.default_rng(0)
    c = x[rng.choice(len(x), k, replace=len(x) < k)].copy()
    for _ in range(iters):
        a = ((x[:, None] - c[None]) ** 2).sum(-1).argmin(1)
        for j in range(k):
            m = x[a == j]
            c[j] = m.mean(0) if len(m) else x[rng.integers(len(x))]
    return c


class RQVAE(nn.Module):
    def __init__(self, in_dim, hidden=(128, 64), latent=32, levels=4, codes=32, text_dim=384):
        super().__init__()
        dims = [in_dim, *hidden, latent]
        self.enc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        rd = dims[::-1]
        self.dec = nn.ModuleList(nn.Linear(a, b) for a, b in zip(rd[:-1], rd[1:]))
        self.codebooks = nn.Parameter(torch.zeros(levels, codes, latent))
        self.align = nn.Linear(latent, text_dim)
        self.levels, self.codes = levels, codes

    @staticmethod
    def _mlp(layers, x):
        for i, l in enumerate(layers):
            x = l(x)
            if i + 1 < len(layers):
                x = torch.relu(x)
        return x

    def encode(self, x):
        return self._mlp(self.enc, x)

    def quantize(self, z):
        r, zq, commit, codes = z, torch.zeros_like(z), 0.0, []
        for l in range(self.levels):
            cb = self.codebooks[l]
            c = torch.cdist(r, cb).argmin(1)
            e = cb[c]
            commit = commit + ((r.detach() - e) ** 2).mean() + 0.25 * ((r - e.detach()) ** 2).mean()
            zq = zq + e
            r = r - e.detach()
            codes.append(c)
        return zq, commit, torch.stack(codes, 1)


def train(vectors, text_emb, cfg, log=print):
    """vectors [N, D] float32; text_emb [N, 384] or None (alignment off). Returns (tokenizer dict pieces, info)."""
    torch.manual_seed(cfg.get("seed", 0))
    rng = np.random.default_rng(cfg.get("seed", 0))
    mu, sd = vectors.mean(0), vectors.std(0) + 1e-6
    x = torch.from_numpy(((vectors - mu) / sd).astype(np.float32))
    L, C = cfg.get("levels", 4), cfg["codes"]
    m = RQVAE(x.shape[1], tuple(cfg.get("hidden", (128, 64))), cfg.get("latent", 32), L, C)
    opt = torch.optim.Adam(m.parameters(), lr=cfg.get("lr", 1e-3))
    t = torch.from_numpy(text_emb) if text_emb is not None else None
    lam = cfg.get("align_weight", 0.5) if t is not None else 0.0
    t0 = time.time()
    # warm-up the autoencoder briefly, then k-means init each level on the residuals
    for ep in range(cfg.get("warmup_epochs", 50)):
        z = m.encode(x)
        loss = ((m._mlp(m.dec, z) - x) ** 2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        r = m.encode(x).numpy()
        for l in range(L):
            cb = kmeans(r, C, rng=rng)
            m.codebooks[l] = torch.from_numpy(cb)
            r = r - cb[((r[:, None] - cb[None]) ** 2).sum(-1).argmin(1)]
    bs = cfg.get("batch", 512)
    for ep in range(cfg.get("epochs", 300)):
        perm = torch.randperm(len(x))
        for s in range(0, len(x), bs):
            idx = perm[s:s + bs]
            z = m.encode(x[idx])
            zq, commit, _ = m.quantize(z)
            zst = z + (zq - z).detach()
            rec = ((m._mlp(m.dec, zst) - x[idx]) ** 2).mean()
            loss = rec + commit
            if lam:
                loss = loss + lam * (1 - nn.functional.cosine_similarity(m.align(zq), t[idx], dim=-1)).mean()
            opt.zero_grad(); loss.backward(); opt.step()
        if (ep + 1) % 100 == 0:
            log(f"rqvae epoch {ep + 1} loss {loss.item():.4f} rec {rec.item():.4f}")
    # export: fold the standardisation into the first layer; codes from the float32 export
    layers = []
    for i, l in enumerate(m.enc):
        W = l.weight.detach().numpy().astype(np.float64)
        b = l.bias.detach().numpy().astype(np.float64)
        if i == 0:
            b = b - W @ (mu / sd)
            W = W / sd[None, :]
        layers.append((W.astype(np.float32), b.astype(np.float32)))
    cb = m.codebooks.detach().numpy().astype(np.float32)
    enc_json = [{"input": W.shape[1], "output": W.shape[0], "weight": tkz.f32_list(W), "bias": tkz.f32_list(b)}
                for W, b in layers]
    cb32 = np.asarray(tkz.f32_list(cb), np.float32).reshape(cb.shape)
    z = tkz.apply_encoder(enc_json, vectors)
    codes = tkz.greedy_codes(z, cb32)
    with torch.no_grad():
        cos = None
        if t is not None:
            zq = torch.from_numpy(cb32[np.arange(L)[None, :], codes].sum(1))
            cos = float(nn.functional.cosine_similarity(m.align(zq), t, dim=-1).mean())
    tuples = {tuple(c) for c in codes.tolist()}
    info = {"seconds": time.time() - t0, "levels": L, "codes": C, "distinct_tuples": len(tuples),
            "items": len(codes), "collision_items": int(len(codes) - len(tuples)),
            "used_codes_per_level": [int(len(set(codes[:, l]))) for l in range(L)],
            "mean_text_cosine": cos, "align_weight": lam}
    log(f"rqvae: {info}")
    return layers, cb32, codes, info
