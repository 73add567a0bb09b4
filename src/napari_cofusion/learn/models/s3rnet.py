"""S³RNet (Lee et al., "Robust Hyperspectral Image Pansharpening via Sparse Spatial-Spectral
Representation", arXiv 2501.07953): a Multi-Branch Fusion Network (MBFN) whose parallel Q, K, V, Z
branches see the inputs at several spatial and spectral scales, Dense Feature Aggregation Blocks
(DFAB) in every branch, and a Spatial-Spectral Attention Weight Block (SSAWB) that weights each
branch's features with independent sigmoid scores (no softmax: weights can all go to zero, which
keeps the fused representation sparse) before they are summed.

Written for this project from the paper's text (its code was not public when the issue was
filed). The choices it leaves open are listed in ``docs/model.md`` (section S³RNet); like HyFusion
the body works on the LR grid (:mod:`~napari_cofusion.learn.models.lrgrid`).

Shapes: B batch, C hyperspectral bands, c multispectral bands, (h, w) LR size, (H, W) = s·(h, w),
D width, U the base (glp-hs fusion or phase-aware bicubic).

Overview (``S3RNet.features``; the head and the residual in ``LRGridNet.forward``)::

    Q  spectral, full bands, LR scale     q = DFAB^n(conv3×3(LRHSI))                       (B, D, h, w)
    K  spatial, MS bands, HR scale        k = DFAB^n(conv3×3(unshuffle(HRMSI)))
    V  coarse: half the bands, LR/2       v = up₂(DFAB^n(conv3×3(pool₂([bandpool(LRHSI), cellmean(HRMSI)]))))
    Z  joint draft, HR scale              z = DFAB^n(conv1×1(unshuffle([U, HRMSI])))
    F  = SSAWB(q, k, v, z)                Σᵢ σ(Wᵢ[q̃ ⊙ f̃ᵢ]) ⊙ Vᵢfᵢ, projected, + z
    F ← DFAB^m(F)
    Z  = U + ρ·ShuffleHead(F, HRMSI)                                                      (B, C, H, W)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from napari_cofusion.core.errors import WeightsError
from napari_cofusion.learn.models.config import NetConfig
from napari_cofusion.learn.models.lrgrid import LRGridNet

__all__ = ["S3RNetConfig", "S3RNet", "DFAB", "SSAWB"]


@dataclass
class S3RNetConfig(NetConfig):
    width: int = 48  # D
    growth: int = 24  # channels each convolution of a DFAB adds
    dense_layers: int = 4  # convolutions per DFAB
    branch_blocks: int = 1  # DFABs per branch
    fusion_blocks: int = 2  # DFABs after the SSAWB
    hr_features: int = 8
    hr_width: int = 24

    NAME = "S³RNet"
    LIMITS = {"width": (4, 512), "growth": (1, 512), "dense_layers": (1, 12), "branch_blocks": (0, 8),
              "fusion_blocks": (0, 8), "hr_features": (1, 256), "hr_width": (1, 512)}


class DFAB(nn.Module):
    """Dense Feature Aggregation Block: ``n`` 3×3 convolutions, each seeing the block input and every
    earlier output (growth g, LReLU); a 1×1 convolution aggregates them all back to D, added to the
    input. (B, D, h, w) → same."""

    def __init__(self, dim: int, growth: int, n: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(dim + i * growth, growth, 3, padding=1) for i in range(n))
        self.aggregate = nn.Conv2d(dim + n * growth, dim, 1)
        self.aggregate.weight.data.mul_(0.1)  # the block starts close to the identity
        nn.init.zeros_(self.aggregate.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs:
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
        return x + self.aggregate(torch.cat(feats, 1))


class SSAWB(nn.Module):
    """Spatial-Spectral Attention Weight Block over the four branches (q, k, v, z) → (B, D, h, w).

    Cross-attention without a softmax: the query branch q, projected, meets each branch fᵢ,
    projected, elementwise (their per-pixel, per-channel correlation); a 1×1 convolution and a
    sigmoid turn that into independent weights in (0, 1) for every pixel and channel of branch i
    (spatial and spectral at once). The weighted value projections are summed, projected, and
    added to the joint branch z."""

    def __init__(self, dim: int, branches: int = 4) -> None:
        super().__init__()
        self.query = nn.Conv2d(dim, dim, 1)
        self.keys = nn.ModuleList(nn.Conv2d(dim, dim, 1) for _ in range(branches))
        self.values = nn.ModuleList(nn.Conv2d(dim, dim, 1) for _ in range(branches))
        self.scores = nn.ModuleList(nn.Conv2d(dim, dim, 1) for _ in range(branches))
        self.out = nn.Conv2d(dim, dim, 1)

    def weights(self, q: torch.Tensor, branches: list[torch.Tensor]) -> list[torch.Tensor]:
        """The sigmoid weights of each branch, (B, D, h, w) each (what the sparsity is measured on)."""
        qq = self.query(q)
        return [torch.sigmoid(score(qq * key(f))) for f, key, score in zip(branches, self.keys, self.scores)]

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        branches = [q, k, v, z]
        fused = sum(w * val(f) for w, f, val in zip(self.weights(q, branches), branches, self.values))
        return z + self.out(fused)


def _branch(stem: nn.Module, cfg: S3RNetConfig, n: int) -> nn.Sequential:
    return nn.Sequential(stem, nn.LeakyReLU(0.2), *[DFAB(cfg.width, cfg.growth, cfg.dense_layers) for _ in range(n)])


class S3RNet(LRGridNet):
    """S³RNet on the LR grid. ``forward(lr (B, C, h, w), msi (B, c, s·h, s·w), base) → (B, C, s·h, s·w)``;
    any image size (the LR grid is padded to even sides inside, for the V branch)."""

    grid = 2

    def __init__(self, cfg: S3RNetConfig | None = None, **kw) -> None:
        if cfg is not None and kw:
            raise WeightsError(f"S³RNet: give a config or keywords, not both ({sorted(kw)})")
        cfg = cfg or S3RNetConfig.from_json(kw)
        super().__init__(cfg, cfg.width, cfg.hr_features, cfg.hr_width)
        C, c, s, D, n = cfg.hs_bands, cfg.ms_bands, cfg.scale, cfg.width, cfg.branch_blocks
        self.coarse_bands = max(1, C // 2)
        self.q_branch = _branch(nn.Conv2d(C, D, 3, padding=1), cfg, n)
        self.k_branch = _branch(nn.Conv2d(c * s * s, D, 3, padding=1), cfg, n)
        self.v_branch = _branch(nn.Conv2d(self.coarse_bands + c, D, 3, padding=1), cfg, n)
        self.z_branch = _branch(nn.Conv2d((C + c) * s * s, D, 1), cfg, n)
        self.fusion = SSAWB(D)
        self.aggregate = nn.Sequential(*[DFAB(D, cfg.growth, cfg.dense_layers) for _ in range(cfg.fusion_blocks)])

    def branches(self, lr: torch.Tensor, msi: torch.Tensor, u: torch.Tensor) -> list[torch.Tensor]:
        """The four branches' features [q, k, v, z], (B, D, h, w) each."""
        s = self.cfg.scale
        b, C, h, w = lr.shape
        coarse = F.adaptive_avg_pool1d(lr.permute(0, 2, 3, 1).reshape(-1, 1, C), self.coarse_bands)
        coarse = coarse.reshape(b, h, w, self.coarse_bands).permute(0, 3, 1, 2)
        v_in = F.avg_pool2d(torch.cat([coarse, F.avg_pool2d(msi, s)], 1), 2)
        v = F.interpolate(self.v_branch(v_in), size=(h, w), mode="bilinear", align_corners=False)
        return [self.q_branch(lr), self.k_branch(F.pixel_unshuffle(msi, s)), v,
                self.z_branch(F.pixel_unshuffle(torch.cat([u, msi], 1), s))]

    def features(self, lr: torch.Tensor, msi: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.aggregate(self.fusion(*self.branches(lr, msi, u)))
