"""CSAKD's student (Hsu et al., "CSAKD: Knowledge Distillation with Cross Self-Attention for
Hyperspectral and Multispectral Image Fusion"): a Dual Two-Streamed (DTS) network of
Cross-Layer Residual Aggregation (CLRA) blocks and a Cross Self-Attention (CSA) fusion module,
distilled from a CoFusion teacher (:mod:`napari_cofusion.learn.distill`).

Written for this project from the paper and a reading of its public code (ming053l/CSAKD);
the choices made here for a fast CPU student are listed in ``docs/model.md``.

Shapes: B batch, C hyperspectral bands, c multispectral bands, (h, w) LR size, (H, W) = s·(h, w)
HR size, D width (64), U the base (glp-hs fusion, or phase-aware bicubic).

Overview (``CSAKDStudent.forward``)::

    four streams, all on the LR grid (HR inputs enter by space-to-depth, s×s cells → channels):
      joint HR   a = CLRA(conv1×1(unshuffle([U, HRMSI])))         (B, D, h, w)
      joint LR   b = CLRA(conv3×3([LRHSI, cellmean(HRMSI)]))      (B, D, h, w)
      HSI        p = CLRA(conv3×3(LRHSI))                         (B, D, h, w)
      MSI        m = CLRA(conv3×3(unshuffle(HRMSI)))              (B, D, h, w)
    F = CSA(p, m, b, a)                                           (B, D, h, w)
    G = shuffle(conv3×3(LReLU(conv3×3(F))))                       (B, k, H, W)  back to the HR grid
    h = LReLU(conv3×3([G, HRMSI]))                                (B, hr_width, H, W)
    h = h + HRBlock(h), hr_blocks times (none in the first shipped student)
    Z = U + ρ·conv3×3(h)                                          (B, C, H, W)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from napari_cofusion.core import ops
from napari_cofusion.core.errors import WeightsError
from napari_cofusion.learn.models.lrgrid import check_inputs

__all__ = ["CSAKDConfig", "CSAKDStudent", "DenseBlock", "CLRABlock", "CrossSelfAttention", "WindowMean", "HRBlock"]


@dataclass
class CSAKDConfig:
    hs_bands: int = 31
    ms_bands: int = 3
    scale: int = 4
    width: int = 64  # D, every stream's width
    growth: int = 32  # channels each convolution of a dense block adds
    dense: int = 3  # dense blocks per CLRA block
    streams: tuple[int, int, int, int] = (1, 1, 1, 1)  # CLRA blocks in [joint HR, joint LR, HSI, MSI]
    heads: int = 4
    attn_dim: int = 64  # query/key/value width of the CSA module (split over the heads)
    window: int = 7  # side (LR pixels) of the local window the CSA statistics are averaged over
    hr_features: int = 8  # k: channels per HR pixel the LR features are shuffled into
    hr_width: int = 16  # width of the HR refinement
    hr_blocks: int = 0  # residual blocks (HRBlock) in the HR refinement, after its first convolution
    base: str = "glp-hs"  # global residual: "glp-hs" (the teacher's) or "bicubic"
    phase: int | None = None  # decimation phase of the LRHSI (default scale // 2)
    residual_scale: float = 0.01  # the correction is predicted in units of this

    LIMITS = {"hs_bands": (1, 4096), "ms_bands": (1, 512), "scale": (2, 32), "width": (4, 512), "growth": (1, 512),
              "dense": (1, 8), "heads": (1, 64), "attn_dim": (1, 1024), "window": (1, 63), "hr_features": (1, 256),
              "hr_width": (1, 512), "hr_blocks": (0, 16)}

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise :class:`WeightsError` naming the field when the configuration is out of bounds."""
        def bad(msg: str) -> WeightsError:
            return WeightsError(f"CSAKD configuration: {msg}")

        for name, (lo, hi) in self.LIMITS.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise bad(f"{name} = {v!r} is outside {lo}–{hi}")
        if self.attn_dim % self.heads:
            raise bad(f"attn_dim = {self.attn_dim} must be a multiple of heads = {self.heads}")
        if self.window % 2 == 0:
            raise bad(f"window = {self.window} must be odd")
        if len(self.streams) != 4 or any(isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 16
                                         for n in self.streams):
            raise bad(f"streams = {list(self.streams)}: four streams of 0–16 CLRA blocks each")
        if self.base not in ("bicubic", "glp-hs"):
            raise bad(f"base = {self.base!r}: use bicubic or glp-hs")
        if self.phase is not None and (isinstance(self.phase, bool) or not isinstance(self.phase, int)
                                       or not 0 <= self.phase < self.scale):
            raise bad(f"phase = {self.phase!r} must be an integer in [0, {self.scale})")
        v = self.residual_scale
        if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 < v <= 10):
            raise bad(f"residual_scale = {v!r} must be in (0, 10]")

    def to_json(self) -> dict:
        d = asdict(self)
        d["streams"] = list(self.streams)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "CSAKDConfig":
        """A card's ``config``: unknown keys refused, lists made tuples, bounds checked."""
        if not isinstance(d, dict):
            raise WeightsError(f"CSAKD configuration: expected a JSON object, got {type(d).__name__}")
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise WeightsError(f"CSAKD configuration: unknown keys {', '.join(unknown)}")
        kw = dict(d)
        if "streams" in kw:
            if not isinstance(kw["streams"], (list, tuple)):
                raise WeightsError(f"CSAKD configuration: streams must be a list, got {kw['streams']!r}")
            kw["streams"] = tuple(kw["streams"])
        try:
            return cls(**kw)
        except TypeError as exc:
            raise WeightsError(f"CSAKD configuration: {exc}") from None


class DenseBlock(nn.Module):
    """Five 3×3 convolutions, each seeing the block input and every earlier output (growth g),
    the last one back to D, added to the input with weight 0.2. (B, D, h, w) → same."""

    def __init__(self, dim: int, growth: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(dim + i * growth, growth if i < 4 else dim, 3, padding=1)
                                   for i in range(5))
        for conv in self.convs:  # small start: the residual path begins close to the identity
            nn.init.kaiming_normal_(conv.weight, a=0.2)
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs[:-1]:
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
        return x + 0.2 * self.convs[-1](torch.cat(feats, 1))


class CLRABlock(nn.Module):
    """Cross-Layer Residual Aggregation: ``n`` dense blocks in a row whose result is added to the
    block input with weight 0.2 (a residual across the layers). (B, D, h, w) → same."""

    def __init__(self, dim: int, growth: int, n: int = 3) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[DenseBlock(dim, growth) for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.blocks(x)


class WindowMean(nn.Module):
    """Mean over a k×k window around each pixel, 'same' size, counting only pixels inside the
    image (separable). (B, N, h, w) → same."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.k // 2
        if r == 0:
            return x
        y = F.avg_pool2d(x, (self.k, 1), 1, (r, 0), count_include_pad=False)
        return F.avg_pool2d(y, (1, self.k), 1, (0, r), count_include_pad=False)


class CrossSelfAttention(nn.Module):
    """Cross Self-Attention fusion of four streams (q, k, v, skip) → (B, D, h, w).

    Queries come from the first stream, keys from the second, values from the third; per head
    the channel-by-channel affinity ⟨q_i, k_j⟩ is averaged over a local window (normalised
    queries and keys, a learned temperature per head) and softmax-ed over j; the attended values
    plus the fourth stream form a fourth feature, and a sigmoid gate per pixel and stream
    (from all four) weights their sum.
    """

    def __init__(self, dim: int, attn_dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.dh = heads, attn_dim // heads
        self.q, self.k, self.v = (nn.Conv2d(dim, attn_dim, 1) for _ in range(3))
        self.out = nn.Conv2d(attn_dim, dim, 1)
        self.temperature = nn.Parameter(torch.full((heads, 1, 1, 1, 1), 4.0))
        self.mean = WindowMean(window)
        self.gate = nn.Conv2d(4 * dim, 4, 1)

    def forward(self, xq: torch.Tensor, xk: torch.Tensor, xv: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        b, _, h, w = xq.shape
        n, d = self.heads, self.dh
        q = F.normalize(self.q(xq).view(b, n, d, h, w), dim=2)
        k = F.normalize(self.k(xk).view(b, n, d, h, w), dim=2)
        v = self.v(xv).view(b, n, d, h, w)
        aff = q[:, :, :, None] * k[:, :, None]  # (B, n, d, d, h, w): q_i k_j at each pixel
        aff = self.mean(aff.view(b, n * d * d, h, w)).view(b, n, d, d, h, w)
        attn = torch.softmax(aff * self.temperature[None], dim=3)
        att = (attn * v[:, :, None]).sum(3).reshape(b, n * d, h, w)
        fourth = self.out(att) + skip
        g = torch.sigmoid(self.gate(torch.cat([xq, xk, xv, fourth], 1)))
        return g[:, 0:1] * xq + g[:, 1:2] * xk + g[:, 2:3] * xv + g[:, 3:4] * fourth


class HRBlock(nn.Module):
    """A residual block on the HR grid: 3×3 convolution to twice the width, LReLU, 3×3 back, added
    to the input. The last convolution starts at zero, so a block added to a trained student leaves
    its output unchanged until training moves it (growing a shipped student). (B, D, H, W) → same."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, 2 * dim, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(2 * dim, dim, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _stream(stem: nn.Module, dim: int, growth: int, dense: int, n: int) -> nn.Sequential:
    return nn.Sequential(stem, nn.LeakyReLU(0.2), *[CLRABlock(dim, growth, dense) for _ in range(n)])


class CSAKDStudent(nn.Module):
    """The distilled student. ``forward(lr (B, C, h, w), msi (B, c, s·h, s·w), base (B, C, s·h, s·w))
    → (B, C, s·h, s·w)``; any image size whose HR side is s × the LR side."""

    #: CPU inference (learn.infer.forward): bf16 autocast, 1.43–1.44× faster on a 512² scene on two
    #: 2-core machines and −0.000 dB on the validation scenes; channels_last on top of it was −8 %
    #: on one and +9 % on the other, so it stays off (benchmarks/precision.py)
    cpu_inference = {"bf16": True, "channels_last": False}

    def __init__(self, cfg: CSAKDConfig | None = None, **kw) -> None:
        super().__init__()
        self.cfg = cfg = cfg or CSAKDConfig(**kw)
        C, c, s, D, g, nd = cfg.hs_bands, cfg.ms_bands, cfg.scale, cfg.width, cfg.growth, cfg.dense
        n_hr, n_lr, n_hsi, n_msi = cfg.streams
        self.joint_hr = _stream(nn.Conv2d((C + c) * s * s, D, 1), D, g, nd, n_hr)
        self.joint_lr = _stream(nn.Conv2d(C + c, D, 3, padding=1), D, g, nd, n_lr)
        self.hsi = _stream(nn.Conv2d(C, D, 3, padding=1), D, g, nd, n_hsi)
        self.msi = _stream(nn.Conv2d(c * s * s, D, 3, padding=1), D, g, nd, n_msi)
        self.fusion = CrossSelfAttention(D, cfg.attn_dim, cfg.heads, cfg.window)
        self.to_hr = nn.Sequential(nn.Conv2d(D, D, 3, padding=1), nn.LeakyReLU(0.2),
                                   nn.Conv2d(D, cfg.hr_features * s * s, 3, padding=1), nn.PixelShuffle(s))
        self.head = nn.Sequential(nn.Conv2d(cfg.hr_features + c, cfg.hr_width, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(cfg.hr_width, C, 3, padding=1))
        # between the head's activation and its last convolution (the head's keys stay those of a
        # student without blocks, so a shipped student loads into a grown one)
        self.refine = nn.Sequential(*[HRBlock(cfg.hr_width) for _ in range(cfg.hr_blocks)])
        nn.init.zeros_(self.head[-1].weight)  # an untrained student returns its base
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, lr: torch.Tensor, msi: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        s = cfg.scale
        check_inputs(cfg, lr, msi, base)
        H, W = msi.shape[-2:]
        u = ops.upsample(lr, s, cfg.phase, out_size=(H, W)) if base is None else base
        a = self.joint_hr(F.pixel_unshuffle(torch.cat([u, msi], 1), s))
        b = self.joint_lr(torch.cat([lr, F.avg_pool2d(msi, s)], 1))
        p = self.hsi(lr)
        m = self.msi(F.pixel_unshuffle(msi, s))
        g = self.to_hr(self.fusion(p, m, b, a))
        h = self.refine(self.head[1](self.head[0](torch.cat([g, msi], 1))))
        return u + cfg.residual_scale * self.head[2](h)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
