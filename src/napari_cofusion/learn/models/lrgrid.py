"""What the networks that work on the LR grid share (HyFusion, S³RNet): the input checks, the
global residual's base, the padding of the LR grid to the multiple the body needs, and the head
back to the HR grid (:class:`~napari_cofusion.learn.models.layers.ShuffleHead`).

HR inputs reach the LR grid by space-to-depth (each s×s cell of HR pixels becomes s² channels of
one LR pixel), so every layer of the body costs 1/s² of what it would on the HR grid and a k×k
window of LR pixels covers (s·k)² HR pixels; the HR detail returns through the head's pixel
shuffle and its convolutions with the HRMSI.

Shapes: B batch, C hyperspectral bands, c multispectral bands, (h, w) LR size, (H, W) = s·(h, w).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from napari_cofusion.core import ops
from napari_cofusion.learn.models.config import NetConfig
from napari_cofusion.learn.models.layers import ShuffleHead

__all__ = ["LRGridNet", "check_inputs"]


def check_inputs(cfg, lr: torch.Tensor, msi: torch.Tensor, base: torch.Tensor | None = None) -> None:
    """A clear ValueError when the pair does not fit a network built for ``cfg`` (band counts, the
    HRMSI's size ``scale`` × the LRHSI's, a base of the output's shape)."""
    s = cfg.scale
    if lr.shape[1] != cfg.hs_bands or msi.shape[1] != cfg.ms_bands:
        raise ValueError(f"model expects {cfg.hs_bands} HS and {cfg.ms_bands} MS bands, "
                         f"got {lr.shape[1]} and {msi.shape[1]}")
    if tuple(msi.shape[-2:]) != (s * lr.shape[-2], s * lr.shape[-1]):
        raise ValueError(f"HRMSI {msi.shape[-2]}×{msi.shape[-1]} is not ×{s} the LRHSI {lr.shape[-2]}×{lr.shape[-1]}")
    if lr.shape[0] != msi.shape[0]:
        raise ValueError(f"LRHSI batch {lr.shape[0]} and HRMSI batch {msi.shape[0]} differ")
    want = (lr.shape[0], cfg.hs_bands, *msi.shape[-2:])
    if base is not None and tuple(base.shape) != want:
        raise ValueError(f"base {tuple(base.shape)} should be {want} (the output's shape)")


class LRGridNet(nn.Module):
    """Base class: ``forward(lr (B, C, h, w), msi (B, c, s·h, s·w), base (B, C, s·h, s·w) or None)
    → (B, C, s·h, s·w)`` = base + ρ·head(features(…)). A subclass builds its body and defines
    :meth:`features`; ``grid`` is the LR multiple the body needs (inputs are padded to it by
    replication and the output cropped back), so any image size works."""

    #: CPU inference (learn.infer.forward): bf16 autocast and channels_last; on this 2-core Xeon the
    #: forward of a 512² scene is 1.33× (HyFusion) and 1.87× (S³RNet) faster than float32 at −0.000 dB
    #: on the validation scenes (benchmarks/precision.py)
    cpu_inference = {"bf16": True, "channels_last": True}
    grid = 1

    def __init__(self, cfg: NetConfig, width: int, hr_features: int, hr_width: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.head = ShuffleHead(width, cfg.hs_bands, cfg.ms_bands, cfg.scale, hr_features, hr_width)

    def features(self, lr: torch.Tensor, msi: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w), (B, c, H, W), (B, C, H, W) → (B, D, h, w) with h, w multiples of ``grid``."""
        raise NotImplementedError

    def forward(self, lr: torch.Tensor, msi: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        s = cfg.scale
        check_inputs(cfg, lr, msi, base)
        h, w = lr.shape[-2:]
        H, W = msi.shape[-2:]
        u = ops.upsample(lr, s, cfg.phase, out_size=(H, W)) if base is None else base
        ph, pw = (-h) % self.grid, (-w) % self.grid
        lr_p, msi_p, u_p = lr, msi, u
        if ph or pw:
            lr_p = F.pad(lr, (0, pw, 0, ph), mode="replicate")
            msi_p = F.pad(msi, (0, s * pw, 0, s * ph), mode="replicate")
            u_p = F.pad(u, (0, s * pw, 0, s * ph), mode="replicate")
        corr = self.head(self.features(lr_p, msi_p, u_p), msi_p)[..., :H, :W]
        return u + cfg.residual_scale * corr

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
