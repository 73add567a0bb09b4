"""HyFusion (Lee et al., "HyFusion: Enhanced Reception Field Transformer for Hyperspectral Image
Fusion", arXiv 2501.04665): Enhanced Reception Field Blocks (ERFB: shifted-window attention with
dense connections) over a quasi-fused draft of the concatenated inputs, and a Dual-Coupled Network
(DCN) whose spatial and spectral branches extract the high-frequency detail of the HRMSI and the
LRHSI and feed each other.

No public code; written for this project from the paper's text. The choices it leaves open are
listed in ``docs/model.md`` (section HyFusion); the main one: the body works on the LR grid
(:mod:`~napari_cofusion.learn.models.lrgrid`), so an 8×8 attention window covers 8s × 8s HR pixels.

Shapes: B batch, C hyperspectral bands, c multispectral bands, (h, w) LR size, (H, W) = s·(h, w),
D width, N = window² tokens per window, U the base (glp-hs fusion or phase-aware bicubic).

Overview (``HyFusion.features``; the head and the residual in ``LRGridNet.forward``)::

    draft   x₀ = conv1×1(unshuffle([U, HRMSI]))                     (B, D, h, w)  quasi-fused draft
                 (U: the base, the glp-hs fusion by default, the upsampled LRHSI with base="bicubic")
            d  = ERFB_spatial^n_draft(x₀)
    DCN     a  = conv3×3(unshuffle(HRMSI − cellmean(HRMSI)))         spatial high frequencies
            b  = conv3×3([LRHSI, ∂λ LRHSI])                          spectral high frequencies
            n_coupled times:  a, b ← ERFB_spatial(a + conv1×1(b)), ERFB_spectral(b + conv1×1(a))
    F = x₀ + conv1×1([d, a, b])                                      (B, D, h, w)
    Z = U + ρ·ShuffleHead(F, HRMSI)                                  (B, C, H, W)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from napari_cofusion.core.errors import WeightsError
from napari_cofusion.learn.models.config import NetConfig
from napari_cofusion.learn.models.layers import DWConv, LayerNorm2d
from napari_cofusion.learn.models.lrgrid import LRGridNet

__all__ = ["HyFusionConfig", "HyFusion", "SpatialWindowAttention", "SpectralWindowAttention", "SwinLayer", "ERFB"]


@dataclass
class HyFusionConfig(NetConfig):
    width: int = 48  # D
    heads: int = 4
    window: int = 8  # side of the attention windows, in LR pixels
    layers: int = 2  # Swin layers per ERFB (every second one shifted by half a window)
    mlp_ratio: int = 2  # width of the feed-forward part, in units of D
    draft_blocks: int = 1  # ERFBs on the quasi-fused draft
    coupled: int = 2  # coupled (spatial, spectral) ERFB pairs of the DCN
    hr_features: int = 8  # channels per HR pixel the LR features are shuffled into
    hr_width: int = 24  # width of the HR head

    NAME = "HyFusion"
    LIMITS = {"width": (4, 512), "heads": (1, 64), "window": (2, 32), "layers": (1, 8), "mlp_ratio": (1, 8),
              "draft_blocks": (0, 8), "coupled": (0, 8), "hr_features": (1, 256), "hr_width": (1, 512)}

    def check_more(self) -> None:
        if self.width % self.heads:
            raise self.error(f"width = {self.width} must be a multiple of heads = {self.heads}")


def _windows(x: torch.Tensor, win: int, shift: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, D, h, w) with h, w multiples of ``win`` → tokens (B, nW, N, D) and a (1, nW, N) mask of the
    tokens inside the image. A shifted partition pads half a window of zeros before (and the rest
    after) each axis, so its windows straddle the plain partition's borders."""
    b, d, h, w = x.shape
    valid = torch.ones(1, 1, h, w, dtype=torch.bool, device=x.device)
    if shift:
        lo, hi = win // 2, win - win // 2
        x = F.pad(x, (lo, hi, lo, hi))
        valid = F.pad(valid, (lo, hi, lo, hi))
    hp, wp = x.shape[-2:]

    def split(t: torch.Tensor) -> torch.Tensor:
        n, k = t.shape[:2]
        return (t.reshape(n, k, hp // win, win, wp // win, win).permute(0, 2, 4, 3, 5, 1)
                .reshape(n, (hp // win) * (wp // win), win * win, k))

    return split(x), split(valid)[..., 0]


def _unwindows(t: torch.Tensor, win: int, shift: bool, h: int, w: int) -> torch.Tensor:
    """The inverse of :func:`_windows`: tokens (B, nW, N, D) → (B, D, h, w)."""
    b, _, _, d = t.shape
    lo = win // 2 if shift else 0
    hp, wp = h + (win if shift else 0), w + (win if shift else 0)
    x = t.reshape(b, hp // win, wp // win, win, win, d).permute(0, 5, 1, 3, 2, 4).reshape(b, d, hp, wp)
    return x[..., lo:lo + h, lo:lo + w]


class SpatialWindowAttention(nn.Module):
    """Multi-head self-attention among the N tokens of each window, with a learned relative
    position bias per head; tokens outside the image (a shifted window's padding) are never
    attended to. (B, nW, N, D), mask (1, nW, N) → (B, nW, N, D)."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.win = heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias = nn.Parameter(torch.zeros(heads, (2 * window - 1) ** 2))
        nn.init.trunc_normal_(self.bias, std=0.02)
        ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        rel = (ys[:, None] - ys[None] + window - 1) * (2 * window - 1) + (xs[:, None] - xs[None] + window - 1)
        self.register_buffer("rel_index", rel, persistent=False)  # (N, N)

    def forward(self, t: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        b, nw, n, d = t.shape
        q, k, v = self.qkv(t).reshape(b, nw, n, 3, self.heads, d // self.heads).permute(3, 0, 1, 4, 2, 5)
        attn_mask = self.bias[:, self.rel_index][None, None]  # (1, 1, heads, N, N)
        if not bool(valid.all()):  # a shifted partition: its padding is never attended to
            pad = torch.zeros(valid.shape, dtype=attn_mask.dtype, device=t.device).masked_fill(~valid, float("-inf"))
            attn_mask = attn_mask + pad[:, :, None, None, :]  # (1, nW, heads, N, N)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask.to(q.dtype))  # (B, nW, heads, N, dh)
        return self.proj(out.transpose(2, 3).reshape(b, nw, n, d))


class SpectralWindowAttention(nn.Module):
    """Multi-head attention across channels inside each window: per head a (dh × dh) affinity of
    L2-normalised queries and keys (over the window's tokens, padding left out) with a learned
    temperature, softmax over the keys, applied to the values. (B, nW, N, D), mask → same."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.temperature = nn.Parameter(torch.full((heads, 1, 1), 4.0))

    def forward(self, t: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        b, nw, n, d = t.shape
        x = self.qkv(t) * valid[..., None].to(t.dtype)  # padding tokens count for nothing
        q, k, v = x.reshape(b, nw, n, 3, self.heads, d // self.heads).permute(3, 0, 1, 4, 5, 2)  # (B, nW, heads, dh, N)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = torch.softmax((q @ k.transpose(-1, -2)) * self.temperature, dim=-1)  # (B, nW, heads, dh, dh)
        out = attn @ v  # (B, nW, heads, dh, N)
        return self.proj(out.permute(0, 1, 4, 2, 3).reshape(b, nw, n, d))


class SwinLayer(nn.Module):
    """A Swin transformer layer on a (B, D, h, w) map (h, w multiples of the window): pre-norm window
    attention (spatial or spectral), then a feed-forward part with a depthwise 3×3 convolution
    between its two 1×1 layers (the "improved" layer: local context the windows lack); both
    residual. ``shift`` uses the half-window-shifted partition. (B, D, h, w) → same."""

    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: int, shift: bool, spectral: bool) -> None:
        super().__init__()
        self.win, self.shift = window, shift
        self.norm1, self.norm2 = LayerNorm2d(dim), LayerNorm2d(dim)
        self.attn = (SpectralWindowAttention if spectral else SpatialWindowAttention)(dim, heads, window)
        hidden = dim * mlp_ratio
        self.ffn = nn.Sequential(nn.Conv2d(dim, hidden, 1), DWConv(hidden, 3), nn.GELU(), nn.Conv2d(hidden, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        t, valid = _windows(self.norm1(x), self.win, self.shift)
        x = x + _unwindows(self.attn(t, valid), self.win, self.shift, h, w)
        return x + self.ffn(self.norm2(x))


class ERFB(nn.Module):
    """Enhanced Reception Field Block: Swin layers in a dense chain (layer i sees the block input
    and every earlier layer's output, reduced to D by a 1×1 convolution), alternately plain and
    shifted windows; a 1×1 convolution fuses all the layers' outputs, added to the input.
    (B, D, h, w) → same."""

    def __init__(self, dim: int, cfg: HyFusionConfig, spectral: bool) -> None:
        super().__init__()
        n = cfg.layers
        self.layers = nn.ModuleList(SwinLayer(dim, cfg.heads, cfg.window, cfg.mlp_ratio, i % 2 == 1, spectral)
                                    for i in range(n))
        self.reduce = nn.ModuleList(nn.Conv2d(dim * (i + 1), dim, 1) for i in range(1, n))
        self.fuse = nn.Conv2d(dim * n, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for i, layer in enumerate(self.layers):
            feats.append(layer(x if i == 0 else self.reduce[i - 1](torch.cat(feats, 1))))
        return x + self.fuse(torch.cat(feats[1:], 1))


class HyFusion(LRGridNet):
    """HyFusion on the LR grid. ``forward(lr (B, C, h, w), msi (B, c, s·h, s·w), base) → (B, C, s·h, s·w)``;
    any image size (the LR grid is padded to a multiple of the window inside)."""

    def __init__(self, cfg: HyFusionConfig | None = None, **kw) -> None:
        if cfg is not None and kw:
            raise WeightsError(f"HyFusion: give a config or keywords, not both ({sorted(kw)})")
        cfg = cfg or HyFusionConfig.from_json(kw)
        super().__init__(cfg, cfg.width, cfg.hr_features, cfg.hr_width)
        self.grid = cfg.window
        C, c, s, D = cfg.hs_bands, cfg.ms_bands, cfg.scale, cfg.width
        self.draft_stem = nn.Conv2d((C + c) * s * s, D, 1)
        self.draft = nn.Sequential(*[ERFB(D, cfg, spectral=False) for _ in range(cfg.draft_blocks)])
        self.spa_stem = nn.Conv2d(c * s * s, D, 3, padding=1)
        self.spe_stem = nn.Conv2d(2 * C - 1, D, 3, padding=1)
        self.spa = nn.ModuleList(ERFB(D, cfg, spectral=False) for _ in range(cfg.coupled))
        self.spe = nn.ModuleList(ERFB(D, cfg, spectral=True) for _ in range(cfg.coupled))
        self.spe_to_spa = nn.ModuleList(nn.Conv2d(D, D, 1) for _ in range(cfg.coupled))
        self.spa_to_spe = nn.ModuleList(nn.Conv2d(D, D, 1) for _ in range(cfg.coupled))
        self.merge = nn.Conv2d(3 * D, D, 1)

    def features(self, lr: torch.Tensor, msi: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        s = self.cfg.scale
        x0 = self.draft_stem(F.pixel_unshuffle(torch.cat([u, msi], 1), s))
        d = self.draft(x0)
        cell = F.avg_pool2d(msi, s)
        a = self.spa_stem(F.pixel_unshuffle(msi - F.interpolate(cell, scale_factor=s, mode="nearest"), s))
        b = self.spe_stem(torch.cat([lr, lr[:, 1:] - lr[:, :-1]], 1))
        for spa, spe, to_a, to_b in zip(self.spa, self.spe, self.spe_to_spa, self.spa_to_spe):
            a, b = spa(a + to_a(b)), spe(b + to_b(a))
        return x0 + self.merge(torch.cat([d, a, b], 1))
