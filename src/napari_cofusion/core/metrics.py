"""Quality metrics exactly as ``shared/PROTOCOL.md`` defines them.

Full reference (fused Z against reference X, both on the [0, 1] scale, no border cropped):

* PSNR: per band 10·log10(1 / MSE_b), mean over bands (float64; checked against torchmetrics).
* SSIM: per band, 11×11 Gaussian window, σ 1.5, K1 0.01, K2 0.03, data range 1, mean over bands
  (torchmetrics' definition, which reflect-pads so that every pixel counts, computed with a
  separable filter: see :func:`ssim_bands`).
* SAM: spectral angle in **degrees** per pixel, mean over pixels where neither spectrum is all
  zero (torchmetrics gives radians and NaN on zero pixels; both are wrapped here).
* ERGAS: (100 / s) · sqrt(mean_b(RMSE_b² / mean(X_b)²)) (torchmetrics with ratio = s).
* RMSE over all elements; CC: Pearson correlation per band, mean over bands.

No reference (QNR family, p = q = α = β = 1): the universal image quality index Q on
non-overlapping 32×32 blocks of the HR grid, averaged; on the LRHSI grid the blocks are 32/s
pixels (at least 4), so both sides of a comparison cover the same ground area, as in the
pansharpening QNR of Alparone et al. and its reference toolbox (32×32 LR blocks would compare
correlations over 128×128 HR pixels at ×4 with correlations over 32×32, and even the reference
itself then scores D_s ≈ 0.16). A block larger than the image shrinks to the image.

* D_λ: mean over band pairs i ≠ j of |Q(F̃_i, F̃_j) − Q(L_i, L_j)|, F̃ the fused cube degraded to
  the LRHSI grid by the PSF.
* D_s: mean over HS band i and MS band k of |Q(F_i, M_k) − Q(L_i, M̃_k)|, M̃ the HRMSI degraded to
  the LRHSI grid.
* QNR = (1 − D_λ)(1 − D_s).

All functions take numpy arrays, torch tensors or Cubes of shape (C, H, W) and compute in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from napari_cofusion.core import ops
from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError

__all__ = [
    "psnr", "psnr_per_band", "ssim", "ssim_bands", "ssim_per_band", "sam", "sam_map", "ergas", "rmse", "cc",
    "full_reference", "q_index_blocks", "d_lambda", "d_s", "qnr", "no_reference", "FULL_REFERENCE_KEYS",
]

FULL_REFERENCE_KEYS = ("psnr", "ssim", "sam", "ergas", "rmse", "cc")


def _t(x: Any) -> torch.Tensor:
    if isinstance(x, Cube):
        x = x.data
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    return t.detach().to(torch.float64)


def _looks_band_last(shape: tuple[int, ...]) -> bool:
    """An (H, W, C) array: the last axis more than twice as short as both others."""
    return len(shape) == 3 and min(shape[0], shape[1]) > 2 * shape[2]


def _pair(z: Any, x: Any) -> tuple[torch.Tensor, torch.Tensor]:
    zt, xt = _t(z), _t(x)
    if zt.dim() != 3 or xt.dim() != 3:
        raise CubeError(f"metrics need (C, H, W) cubes, got shapes {tuple(zt.shape)} and {tuple(xt.shape)}")
    for name, v, t in (("fused", z, zt), ("reference", x, xt)):
        if not isinstance(v, Cube) and _looks_band_last(tuple(t.shape)):
            raise CubeError(
                f"the {name} array of shape {tuple(t.shape)} looks band-last (H, W, C); metrics take band-first "
                "(C, H, W) cubes: pass np.moveaxis(a, -1, 0), or a Cube"
            )
    if zt.shape != xt.shape:
        raise CubeError(f"fused cube {tuple(zt.shape)} and reference {tuple(xt.shape)} differ in shape")
    return zt, xt


def psnr_per_band(z: Any, x: Any) -> np.ndarray:
    """10·log10(1 / MSE_b) per band, in float64 (torchmetrics' PSNR keeps 10/ln 10 in float32,
    a 5e-8 relative error; the tests compare the two)."""
    zt, xt = _pair(z, x)
    return (10.0 * torch.log10(1.0 / ((zt - xt) ** 2).mean(dim=(1, 2)))).numpy()


def psnr(z: Any, x: Any) -> float:
    return float(np.mean(psnr_per_band(z, x)))


def _gauss_1d(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    r = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    return g / g.sum()


def ssim_bands(z: torch.Tensor, x: torch.Tensor, size: int = 11, sigma: float = 1.5,
               k1: float = 0.01, k2: float = 0.03, data_range: float = 1.0) -> torch.Tensor:
    """Per-band SSIM of (..., C, H, W) tensors → (..., C); differentiable (used by the training loss).

    The same definition as torchmetrics' ``structural_similarity_index_measure`` (reflect padding
    by half the window, clamped variances, mean over every pixel) computed with two 1-D passes of
    the separable Gaussian: torchmetrics' dense 11×11 convolution needs gigabytes on a 512×512
    float64 cube on the CPU. Tests check the two agree.
    """
    lead = z.shape[:-2]
    h, w = z.shape[-2:]
    if min(h, w) <= (size - 1) // 2:
        raise CubeError(f"SSIM needs images of at least {(size - 1) // 2 + 1}×{(size - 1) // 2 + 1} pixels "
                        f"(its {size}×{size} window, reflect-padded), got {h}×{w}")
    zt = z.reshape(-1, lead[-1] if lead else 1, h, w)
    xt = x.reshape(zt.shape)
    n = zt.shape[1]
    pad = (size - 1) // 2
    g = _gauss_1d(size, sigma, zt.dtype, zt.device)
    # bands as channels of a grouped (depthwise) convolution: far faster on the CPU, forward and
    # backward, than bands as a batch of single-channel images
    gh = g.view(1, 1, size, 1).expand(5 * n, 1, size, 1).contiguous()
    gw = g.view(1, 1, 1, size).expand(5 * n, 1, 1, size).contiguous()
    stack = torch.cat([zt, xt, zt * zt, xt * xt, zt * xt], 1)
    stack = torch.nn.functional.pad(stack, (pad, pad, pad, pad), mode="reflect")
    filt = torch.nn.functional.conv2d(torch.nn.functional.conv2d(stack, gh, groups=5 * n), gw, groups=5 * n)
    mz, mx, zz, xx, zx = filt.split(n, dim=1)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    vz = torch.clamp(zz - mz * mz, min=0.0)
    vx = torch.clamp(xx - mx * mx, min=0.0)
    cov = zx - mz * mx
    s = ((2 * mz * mx + c1) * (2 * cov + c2)) / ((mz * mz + mx * mx + c1) * (vz + vx + c2))
    return s.mean(dim=(-1, -2)).reshape(lead)


def ssim_per_band(z: Any, x: Any) -> np.ndarray:
    zt, xt = _pair(z, x)
    return ssim_bands(zt, xt).numpy()


def ssim(z: Any, x: Any) -> float:
    return float(np.mean(ssim_per_band(z, x)))


def sam_map(z: Any, x: Any) -> np.ndarray:
    """Per-pixel spectral angle in degrees, (H, W); NaN where either spectrum is all zero."""
    zt, xt = _pair(z, x)
    from torchmetrics.functional.image import spectral_angle_mapper  # imported here: ~2 s at start-up

    ang = spectral_angle_mapper(zt[None], xt[None], reduction="none")[0]
    valid = (zt.abs().sum(0) > 0) & (xt.abs().sum(0) > 0)
    deg = torch.rad2deg(ang)
    return torch.where(valid, deg, torch.full_like(deg, float("nan"))).numpy()


def sam(z: Any, x: Any) -> float:
    m = sam_map(z, x)
    valid = np.isfinite(m)
    return float(m[valid].mean()) if valid.any() else float("nan")


def ergas(z: Any, x: Any, scale: float) -> float:
    zt, xt = _pair(z, x)
    from torchmetrics.functional.image import error_relative_global_dimensionless_synthesis

    return float(error_relative_global_dimensionless_synthesis(zt[None], xt[None], ratio=float(scale)))


def rmse(z: Any, x: Any) -> float:
    zt, xt = _pair(z, x)
    return float(torch.sqrt(torch.mean((zt - xt) ** 2)))


def cc(z: Any, x: Any) -> float:
    zt, xt = _pair(z, x)
    a = zt.flatten(1) - zt.flatten(1).mean(1, keepdim=True)
    b = xt.flatten(1) - xt.flatten(1).mean(1, keepdim=True)
    den = torch.sqrt((a * a).sum(1) * (b * b).sum(1))
    r = torch.where(den > 0, (a * b).sum(1) / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(den))
    return float(r.mean())


def full_reference(z: Any, x: Any, scale: float) -> dict[str, float]:
    """All full-reference metrics of PROTOCOL.md as a dict (psnr, ssim, sam, ergas, rmse, cc)."""
    return {
        "psnr": psnr(z, x), "ssim": ssim(z, x), "sam": sam(z, x),
        "ergas": ergas(z, x, scale), "rmse": rmse(z, x), "cc": cc(z, x),
    }


# ---------------------------------------------------------------------------- no reference
def _blocks(t: torch.Tensor, block: int) -> torch.Tensor:
    """(C, H, W) → (C, n_blocks, bs*bs) non-overlapping blocks of side min(block, H, W)."""
    c, h, w = t.shape
    bs = min(block, h, w)
    nh, nw = h // bs, w // bs
    t = t[:, : nh * bs, : nw * bs].reshape(c, nh, bs, nw, bs).permute(0, 1, 3, 2, 4)
    return t.reshape(c, nh * nw, bs * bs)


def q_index_blocks(a: Any, b: Any, block: int = 32) -> np.ndarray:
    """Universal image quality index between every band of ``a`` (Ca, H, W) and every band
    of ``b`` (Cb, H, W), averaged over non-overlapping blocks: a (Ca, Cb) matrix."""
    at, bt = _t(a), _t(b)
    if at.shape[1:] != bt.shape[1:]:
        raise CubeError(f"Q index needs equal image sizes, got {tuple(at.shape[1:])} and {tuple(bt.shape[1:])}")
    A, B = _blocks(at, block), _blocks(bt, block)
    n = A.shape[-1]
    ma, mb = A.mean(-1), B.mean(-1)  # (Ca, nb), (Cb, nb)
    da, db = A - ma[..., None], B - mb[..., None]
    va, vb = (da * da).sum(-1) / n, (db * db).sum(-1) / n
    cov = torch.einsum("inp,jnp->ijn", da, db) / n  # (Ca, Cb, nb)
    num = 4.0 * cov * ma[:, None, :] * mb[None, :, :]
    den = (va[:, None, :] + vb[None, :, :]) * (ma[:, None, :] ** 2 + mb[None, :, :] ** 2)
    same = (va[:, None, :] == 0) & (vb[None, :, :] == 0) & (ma[:, None, :] == mb[None, :, :])
    q = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), same.to(num.dtype))
    return q.mean(-1).numpy()


def d_lambda(fused: Any, lr: Any, kernel: np.ndarray, scale: int, block: int = 32, phase: int | None = None) -> float:
    ft, lt = _t(fused), _t(lr)
    f_lr = ops.degrade(ft, kernel, scale, phase)
    if f_lr.shape != lt.shape:
        raise CubeError(f"fused cube degraded to {tuple(f_lr.shape)} does not match the LRHSI {tuple(lt.shape)}")
    lb = max(block // scale, 4)
    qf, ql = q_index_blocks(f_lr, f_lr, lb), q_index_blocks(lt, lt, lb)
    c = qf.shape[0]
    if c < 2:
        return 0.0
    off = ~np.eye(c, dtype=bool)
    return float(np.abs(qf - ql)[off].mean())


def d_s(fused: Any, lr: Any, msi: Any, kernel: np.ndarray, scale: int, block: int = 32, phase: int | None = None) -> float:
    ft, lt, mt = _t(fused), _t(lr), _t(msi)
    if ft.shape[1:] != mt.shape[1:]:
        raise CubeError(f"fused cube {tuple(ft.shape)} and HRMSI {tuple(mt.shape)} differ in size")
    m_lr = ops.degrade(mt, kernel, scale, phase)
    q_hr = q_index_blocks(ft, mt, block)
    q_lr = q_index_blocks(lt, m_lr, max(block // scale, 4))
    return float(np.abs(q_hr - q_lr).mean())


def no_reference(fused: Any, lr: Any, msi: Any, kernel: np.ndarray, scale: int, block: int = 32, phase: int | None = None) -> dict[str, float]:
    """D_λ, D_s and QNR for a fusion without a high-resolution reference."""
    dl = d_lambda(fused, lr, kernel, scale, block, phase)
    ds = d_s(fused, lr, msi, kernel, scale, block, phase)
    return {"d_lambda": dl, "d_s": ds, "qnr": (1.0 - dl) * (1.0 - ds)}


def qnr(fused: Any, lr: Any, msi: Any, kernel: np.ndarray, scale: int, block: int = 32) -> float:
    return no_reference(fused, lr, msi, kernel, scale, block)["qnr"]
