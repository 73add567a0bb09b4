"""Layers shared by the networks: channel LayerNorm, a fast 'same' max-pool, depthwise
convolution, the Haar DWT and the head that takes LR-grid features to the HR correction. One
layer per class; shapes in the docstrings."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LayerNorm2d", "MaxPoolSame", "DWConv", "HaarDWT", "ShuffleHead"]


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a (B, D, H, W) map."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class MaxPoolSame(nn.Module):
    """k×k max-pool, stride 1, 'same' size (the result of ``nn.MaxPool2d(k, 1, k // 2)``).

    Computed separably, and along each axis by doubling windows (max of 2, of 4, …, then the
    k-window as the max of two overlapping power-of-two windows): about 2·log₂k elementwise
    maxima instead of a k×k window loop, several times faster on the CPU. (B, D, H, W) → same.
    """

    def __init__(self, kernel: int) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"max-pool kernel must be a positive odd number, got {kernel}")
        self.k = kernel

    @staticmethod
    def _axis(x: torch.Tensor, k: int, dim: int) -> torch.Tensor:
        r = k // 2
        pad = [0, 0, 0, 0]
        pad[0 if dim == -1 else 2] = r
        pad[1 if dim == -1 else 3] = r
        y = F.pad(x, pad, value=float("-inf"))  # (…, n + 2r) along dim
        n = x.shape[dim]
        w = 1
        while 2 * w <= k:  # y[i] = max of the w-window starting at i
            m = y.shape[dim] - w
            y = torch.maximum(y.narrow(dim, 0, m), y.narrow(dim, w, m))
            w *= 2
        if w < k:  # two overlapping w-windows cover the k-window
            y = torch.maximum(y.narrow(dim, 0, n), y.narrow(dim, k - w, n))
        return y.narrow(dim, 0, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.k == 1:
            return x
        if torch.is_grad_enabled() and x.requires_grad:  # training: the native op's backward is cheaper
            return F.max_pool2d(x, self.k, 1, self.k // 2)
        return self._axis(self._axis(x, self.k, -1), self.k, -2)


class DWConv(nn.Conv2d):
    """Depthwise k×k convolution with 'same' padding (dilation aware)."""

    def __init__(self, dim: int, kernel: int = 3, dilation: int = 1) -> None:
        super().__init__(dim, dim, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation, groups=dim)


class HaarDWT(nn.Module):
    """One-level 2-D Haar DWT per channel and its exact inverse (orthonormal filters).

    forward: (B, D, H, W) → LL (B, D, H/2, W/2), HF (B, 3D, H/2, W/2) ordered [LH, HL, HH] per channel,
    with LL = (x₀₀ + x₀₁ + x₁₀ + x₁₁)/2, LH = (x₀₀ + x₀₁ − x₁₀ − x₁₁)/2 (rows), HL = (x₀₀ − x₀₁ + x₁₀ − x₁₁)/2
    (columns), HH = (x₀₀ − x₀₁ − x₁₀ + x₁₁)/2 over each 2×2 cell. Written as sums of the four
    polyphase components, several times faster on the CPU than a strided convolution.
    H and W must be even (the model pads its input to a multiple of 8).
    """

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, d, h, w = x.shape
        xe, xo = x[..., 0::2, :], x[..., 1::2, :]
        rs, rd = (xe + xo) * 0.5, (xe - xo) * 0.5  # row sum / difference, (B, D, H/2, W)
        ll = rs[..., 0::2] + rs[..., 1::2]
        hf = torch.stack([rd[..., 0::2] + rd[..., 1::2], rs[..., 0::2] - rs[..., 1::2], rd[..., 0::2] - rd[..., 1::2]], 2)
        return ll, hf.reshape(b, 3 * d, h // 2, w // 2)

    def inverse(self, ll: torch.Tensor, hf: torch.Tensor) -> torch.Tensor:
        b, d, h, w = ll.shape
        hf = hf.reshape(b, d, 3, h, w)
        lh, hl, hh = hf[:, :, 0], hf[:, :, 1], hf[:, :, 2]
        a, c = (ll + lh) * 0.5, (ll - lh) * 0.5
        e, f = (hl + hh) * 0.5, (hl - hh) * 0.5
        top = torch.stack([a + e, a - e], -1).reshape(b, d, h, 2 * w)  # x00, x01 interleaved
        bottom = torch.stack([c + f, c - f], -1).reshape(b, d, h, 2 * w)  # x10, x11
        return torch.stack([top, bottom], -2).reshape(b, d, 2 * h, 2 * w)


class ShuffleHead(nn.Module):
    """From LR-grid features to the HR correction: two 3×3 convolutions to ``k·s²`` channels, a
    pixel shuffle to ``k`` channels per HR pixel, then with the HRMSI two 3×3 convolutions to the C
    bands. The last convolution starts at zero, so an untrained network returns its base.
    (B, D, h, w), (B, c, s·h, s·w) → (B, C, s·h, s·w)."""

    def __init__(self, dim: int, hs_bands: int, ms_bands: int, scale: int, features: int, width: int) -> None:
        super().__init__()
        self.to_hr = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.LeakyReLU(0.2),
                                   nn.Conv2d(dim, features * scale * scale, 3, padding=1), nn.PixelShuffle(scale))
        self.out = nn.Sequential(nn.Conv2d(features + ms_bands, width, 3, padding=1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(width, hs_bands, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, feats: torch.Tensor, msi: torch.Tensor) -> torch.Tensor:
        return self.out(torch.cat([self.to_hr(feats), msi], 1))
