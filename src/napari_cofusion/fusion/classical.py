"""The classical, training-free fusion methods (registered on import).

``bicubic``
    Phase-aware bicubic upsampling of the LRHSI (LR sample i sits at HR pixel s·i + s//2, where
    the protocol's decimation took it). The floor: ignores the HRMSI.
``glp-hs``
    Regression-based hypersharpening with GLP-style detail injection (Selva et al. 2015 family;
    GSA-like regression of each HS band on all MS bands): the MS bands are degraded to the LR grid
    with the same PSF; each LR HS band is regressed (least squares with intercept) on them, locally
    over (2r+1)² LR windows (a multi-channel guided filter, r = 2 by default; ``radius=0`` is one
    global regression); the coefficients, upsampled, applied to the HR MS bands give a synthetic HR
    band S_b that carries the MS detail; the LR residual L_b − degrade(S_b), what the MS bands cannot
    explain, is upsampled and added back. On the two CAVE validation scenes at ×4 the local fit
    gains 1.3–2.5 dB PSNR over the global one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from napari_cofusion.core import ops
from napari_cofusion.fusion.registry import FusionMethod, register

__all__ = ["local_regression", "glp_hs", "bicubic", "glp_hs_reach"]


def bicubic(lr: np.ndarray, msi: np.ndarray, scale: int, kernel: np.ndarray, phase: int, **_: Any) -> np.ndarray:
    with torch.inference_mode():
        return ops.upsample(torch.from_numpy(lr), scale, phase, out_size=msi.shape[-2:]).numpy()


def _box_mean(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over a (2r+1)² window with reflect padding, for a (N, H, W) stack."""
    xp = ops._pad_reflect(x[None], r, r)
    return torch.nn.functional.avg_pool2d(xp, 2 * r + 1, stride=1)[0]


def local_regression(lr: torch.Tensor, ms_lr: torch.Tensor, radius: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel least squares L_b ≈ Σ_k a_kb M̃_k + b_b over (2r+1)² LR windows (a multi-channel
    guided filter): returns a (c, C, h, w) and b (C, h, w), smoothed over the same windows.
    ``radius=0`` fits one global regression for the whole scene."""
    c, C = ms_lr.shape[0], lr.shape[0]
    hw = lr.shape[-2:]
    if radius <= 0:
        mM = ms_lr.mean((1, 2), keepdim=True).expand(c, *hw)
        mL = lr.mean((1, 2), keepdim=True).expand(C, *hw)
        mean = lambda t: t.mean((-1, -2), keepdim=True).expand(*t.shape)  # noqa: E731
    else:
        mM, mL = _box_mean(ms_lr, radius), _box_mean(lr, radius)
        mean = lambda t: _box_mean(t.reshape(-1, *hw), radius).reshape(t.shape)  # noqa: E731
    MM = mean(torch.einsum("khw,lhw->klhw", ms_lr, ms_lr)) - torch.einsum("khw,lhw->klhw", mM, mM)
    ML = mean(torch.einsum("khw,bhw->kbhw", ms_lr, lr)) - torch.einsum("khw,bhw->kbhw", mM, mL)
    MM = MM + eps * torch.eye(c, dtype=MM.dtype)[:, :, None, None]
    a = torch.linalg.solve(MM.permute(2, 3, 0, 1), ML.permute(2, 3, 0, 1)).permute(2, 3, 0, 1)
    b = mL - torch.einsum("kbhw,khw->bhw", a, mM)
    return mean(a), mean(b)


def glp_hs(lr: np.ndarray, msi: np.ndarray, scale: int, kernel: np.ndarray, phase: int,
            radius: int = 2, eps: float = 1e-8, **_: Any) -> np.ndarray:
    # the regression (small, ill-conditioned normal equations) runs in float64 at the LR size;
    # the HR work (upsampling 3·C coefficient maps, injection) in float32, which changes the
    # result by ~1e-6 and halves the time
    with torch.inference_mode():
        L = torch.from_numpy(lr).double()
        M = torch.from_numpy(msi).float()
        hw = M.shape[-2:]
        M_lr = ops.degrade(M.double(), kernel, scale, phase)
        a, b = local_regression(L, M_lr, radius, eps)
        a, b = a.float(), b.float()
        c, C = a.shape[:2]
        A = ops.upsample(a.reshape(c * C, *a.shape[-2:]), scale, phase, out_size=hw).reshape(c, C, *hw)
        S = torch.einsum("kbhw,khw->bhw", A, M) + ops.upsample(b, scale, phase, out_size=hw)
        residual = ops.upsample(L.float() - ops.degrade(S, kernel, scale, phase), scale, phase, out_size=hw)
        return (S + residual).numpy()


def glp_hs_reach(scale: int, kernel: Any, radius: int = 2) -> int:
    """HR pixels glp-hs looks around a pixel: the PSF, twice the regression window (fit, then
    smoothing of the coefficients) and the bicubic upsampling (2 LR pixels each side), with room."""
    k = int(np.asarray(kernel).shape[-1]) // 2 + 1
    return k + scale * (2 * radius + 4) + 2 * k


def _bicubic_reach(scale: int, kernel: Any) -> int:
    return 3 * scale


register(FusionMethod("bicubic", "Phase-aware bicubic upsampling of the LRHSI (ignores the HRMSI)", bicubic,
                      reach=_bicubic_reach, bytes_per_pixel=lambda C, c: 16.0 * C))
register(FusionMethod(
    "glp-hs", "Local-regression hypersharpening + detail injection (training-free classical baseline)", glp_hs,
    options={"radius": 2, "eps": 1e-8}, reach=glp_hs_reach,
    # float32 HR: the c·C upsampled coefficients, the synthetic bands, the residual and the result
    bytes_per_pixel=lambda C, c: 4.0 * C * (c + 5),
))
