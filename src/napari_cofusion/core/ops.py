"""Differentiable degradation and resampling operators in torch.

Everything the simulation, the classical baselines and the networks share: Gaussian/box
PSF kernels, band-wise blurring with reflect padding, phase-aware decimation, phase-aware
bicubic upsampling and spectral projection. Tensors are ``(B, C, H, W)`` or ``(C, H, W)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "gaussian_kernel",
    "box_kernel",
    "blur",
    "decimate",
    "degrade",
    "upsample",
    "project",
    "half_pixel_kernel",
    "sample_offset",
    "sample_centre",
    "kernel_sigma",
    "as_batch",
]


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """Normalised 2-D Gaussian ``exp(-(x² + y²) / 2σ²)`` on a ``size × size`` grid centred on 0."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"Gaussian kernel size must be a positive odd number, got {size}")
    if not sigma > 0:
        raise ValueError(f"Gaussian sigma must be positive, got {sigma}")
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2.0 * sigma**2))
    return g / g.sum()


def half_pixel_kernel(kernel: np.ndarray) -> np.ndarray:
    """An even ``k × k`` kernel as the odd ``(k + 1) × (k + 1)`` kernel (a zero last row and column)
    whose LR sample, kept at pixel ``j`` by :func:`decimate`, summarises HR pixels
    ``j - k/2 + 1 … j + k/2``: centred at ``j + 1/2``, the convention of the ``dhif`` protocols
    (an s×s kernel kept at ``s//2 - 1`` summarises the block ``s·i … s·i + s - 1``)."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] % 2 or k.shape[1] % 2:
        raise ValueError(f"expected an even-sized 2-D kernel, got shape {k.shape}")
    return np.pad(k, ((0, 1), (0, 1)))


def sample_offset(kernel: np.ndarray) -> tuple[float, float]:
    """Where the LR sample that :func:`degrade` keeps at HR pixel ``j`` is centred, relative to ``j``
    (rows, columns): the anchor of the convolution minus the kernel's centroid. 0 for a symmetric
    odd kernel, +1/2 for :func:`half_pixel_kernel`, -1/2 for a symmetric even kernel (the
    convolution anchors it at ``k/2 - 1``)."""
    k = np.asarray(kernel, dtype=np.float64)
    total = k.sum()
    out = []
    for axis in (0, 1):
        n = k.shape[axis]
        w = k.sum(axis=1 - axis) / total
        off = round((n - 1) // 2 - float(np.dot(w, np.arange(n))), 6)  # float noise off the half pixel
        out.append(0.0 if off == 0 else off)
    return out[0], out[1]


def kernel_sigma(kernel: np.ndarray) -> float:
    """The PSF's width in HR pixels: the root-mean-square distance of its weights from their
    centroid along one axis (the mean of the rows' and the columns' second moments); a Gaussian's
    sigma, a little less where its kernel cuts the tails (3×3, sigma 0.5: 0.45)."""
    k = np.abs(np.asarray(kernel, dtype=np.float64))
    k = k / k.sum()
    var = []
    for axis in (0, 1):
        w = k.sum(axis=1 - axis)
        x = np.arange(w.shape[0], dtype=np.float64)
        var.append(float(np.dot(w, (x - np.dot(w, x)) ** 2)))
    return float(np.sqrt(np.mean(var)))


def sample_centre(kernel: np.ndarray, phase: int) -> tuple[float, float]:
    """HR coordinate (rows, columns) of LR sample 0: ``phase`` plus :func:`sample_offset`. LR sample
    ``i`` sits at ``scale·i`` plus this; :func:`upsample` takes it as its ``phase``."""
    oy, ox = sample_offset(kernel)
    return phase + oy, phase + ox


def box_kernel(size: int) -> np.ndarray:
    """Normalised ``size × size`` box (mean) kernel."""
    if size < 1:
        raise ValueError(f"box kernel size must be positive, got {size}")
    return np.full((size, size), 1.0 / (size * size))


def as_batch(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Add a batch axis to a ``(C, H, W)`` tensor; the flag says whether one was added."""
    if x.dim() == 3:
        return x.unsqueeze(0), True
    if x.dim() == 4:
        return x, False
    raise ValueError(f"expected a (C, H, W) or (B, C, H, W) tensor, got shape {tuple(x.shape)}")


def _pad_reflect(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """Reflect padding (mirror without repeating the edge), falling back to replicate where
    the image is too small to mirror."""
    if ph == 0 and pw == 0:
        return x
    h, w = x.shape[-2:]
    if ph < h and pw < w:
        return F.pad(x, (pw, pw, ph, ph), mode="reflect")
    return F.pad(x, (pw, pw, ph, ph), mode="replicate")


def _filter(x: torch.Tensor, kernel: np.ndarray | torch.Tensor, stride: int = 1, offset: int = 0) -> torch.Tensor:
    """Every band convolved with the same 2-D kernel on the reflect-padded (B, C, H, W) input,
    evaluated at pixels ``offset + stride·i`` of the blurred image (uncropped)."""
    k = torch.as_tensor(kernel, dtype=x.dtype, device=x.device)
    kh, kw = k.shape
    xp = _pad_reflect(x, kh // 2, kw // 2)
    # conv2d is cross-correlation: flip so that non-symmetric kernels act as a convolution
    weight = torch.flip(k, dims=(0, 1)).expand(x.shape[1], 1, kh, kw)
    xp = xp[..., offset:, offset:]
    short_h, short_w = max(0, kh - xp.shape[-2]), max(0, kw - xp.shape[-1])
    if short_h or short_w:  # an offset past a tiny image: outputs that the callers crop away
        xp = F.pad(xp, (0, short_w, 0, short_h))
    return F.conv2d(xp, weight, groups=x.shape[1], stride=stride)


def blur(x: torch.Tensor, kernel: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Convolve every band with the same 2-D kernel, reflect padding, output the input's size."""
    xb, squeezed = as_batch(x)
    out = _filter(xb, kernel)[..., : xb.shape[-2], : xb.shape[-1]]  # even kernels give one more
    return out.squeeze(0) if squeezed else out


def decimate(x: torch.Tensor, scale: int, phase: int | None = None) -> torch.Tensor:
    """Keep every ``scale``-th pixel starting at ``phase`` (default ``scale // 2``)."""
    p = scale // 2 if phase is None else phase
    return x[..., p::scale, p::scale]


def degrade(x: torch.Tensor, kernel: np.ndarray | torch.Tensor, scale: int, phase: int | None = None) -> torch.Tensor:
    """Spatial degradation: blur by the PSF, then decimate; the blur is evaluated only at the
    pixels decimation keeps (a strided convolution: same values as ``decimate(blur(x))``)."""
    xb, squeezed = as_batch(x)
    p = scale // 2 if phase is None else phase
    H, W = xb.shape[-2:]
    out = _filter(xb, kernel, scale, p)[..., : len(range(p, H, scale)), : len(range(p, W, scale))]
    return out.squeeze(0) if squeezed else out


def upsample(x: torch.Tensor, scale: int, phase: "float | tuple[float, float] | None" = None,
             out_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Bicubic upsampling that puts LR sample ``i`` at HR coordinate ``scale·i + phase``, the place
    :func:`decimate` took it from (``F.interpolate`` assumes half-pixel centres instead, half
    a pixel off for the protocol's phase at ×4 and 1.5 px off for phase 0). ``phase`` may be a
    fraction or a (rows, columns) pair: :func:`sample_centre` of the PSF, for kernels whose sample
    lies between HR pixels (the ``dhif`` protocols)."""
    xb, squeezed = as_batch(x)
    p = scale // 2 if phase is None else phase
    py, px = (p, p) if not isinstance(p, (tuple, list)) else p
    h, w = xb.shape[-2:]
    H, W = out_size if out_size is not None else (h * scale, w * scale)

    def axis(n_hr: int, n_lr: int, p0: float) -> torch.Tensor:
        u = (torch.arange(n_hr, dtype=xb.dtype, device=xb.device) - float(p0)) / scale
        return 2.0 * u / max(n_lr - 1, 1) - 1.0 if n_lr > 1 else torch.zeros(n_hr, dtype=xb.dtype, device=xb.device)

    gy, gx = axis(H, h, py), axis(W, w, px)
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)  # (H, W, 2) as (x, y)
    grid = grid.unsqueeze(0).expand(xb.shape[0], H, W, 2)
    out = F.grid_sample(xb, grid, mode="bicubic", padding_mode="border", align_corners=True)
    return out.squeeze(0) if squeezed else out


def project(x: torch.Tensor, srf: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Spectral projection ``R · x`` with ``R`` of shape (c, C)."""
    r = torch.as_tensor(srf, dtype=x.dtype, device=x.device)
    if r.shape[1] != x.shape[-3]:
        raise ValueError(f"spectral response has {r.shape[1]} columns but the cube has {x.shape[-3]} bands")
    return torch.einsum("mc,...chw->...mhw", r, x)


def gaussian_sigma_wald(scale: int) -> float:
    """The sigma whose FWHM equals the scale: ``s / (2·sqrt(2·ln 2))``."""
    return scale / (2.0 * math.sqrt(2.0 * math.log(2.0)))
