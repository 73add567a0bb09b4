"""The fusion-method registry: every way of turning (LRHSI, HRMSI) into an HR hyperspectral cube.

Classical, training-free methods live here; learned models register themselves the same way
(:func:`register`). Use :func:`fuse` from Python, the CLI and the GUI alike.

``bicubic``
    Phase-aware bicubic upsampling of the LRHSI (LR sample i sits at HR pixel s·i + s//2, where
    the protocol's decimation took it). The floor: ignores the HRMSI.
``glp-hs``
    Regression-based hypersharpening with GLP-style detail injection (Selva et al. 2015 family;
    GSA-like regression of each HS band on all MS bands): the MS bands are degraded to the LR grid
    with the same PSF; each LR HS band is regressed (least squares with intercept) on them; the
    regression applied to the HR MS bands gives a synthetic HR band S_b that carries the MS detail;
    the LR residual L_b − degrade(S_b) — what the MS bands cannot explain — is upsampled and added
    back. At the LR grid the result reproduces the LRHSI's regression fit exactly, at HR it
    injects the MS detail with band-specific gains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from . import ops
from .cube import Cube, CubeError
from .simulate import PSF, infer_scale

__all__ = ["FusionMethod", "register", "get_method", "method_names", "fuse", "check_pair", "FusionResult"]


@dataclass
class FusionMethod:
    name: str
    description: str
    run: Callable[..., np.ndarray]
    needs_weights: bool = False
    options: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, FusionMethod] = {}


def register(method: FusionMethod) -> FusionMethod:
    _REGISTRY[method.name] = method
    return method


def method_names() -> list[str]:
    _load_plugins()
    return list(_REGISTRY)


def get_method(name: str) -> FusionMethod:
    _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CubeError(f"unknown fusion method {name!r}: choose one of {', '.join(_REGISTRY)}") from None


def _load_plugins() -> None:
    """Import modules that register learned methods (kept lazy so the core stays light)."""
    try:
        from . import model_method  # noqa: F401  (registers "cofusion" when present)
    except ImportError:
        pass


def check_pair(lr: Cube, msi: Cube) -> int:
    """Validate an (LRHSI, HRMSI) pair and return the scale; the message names the problem."""
    if lr.bands < msi.bands:
        raise CubeError(
            f"the LRHSI '{lr.name}' has {lr.bands} bands and the HRMSI '{msi.name}' {msi.bands}: the hyperspectral "
            "input must have more bands (are the two swapped?)"
        )
    scale = infer_scale(lr.shape, msi.shape)
    if scale < 2:
        raise CubeError(f"LRHSI '{lr.name}' and HRMSI '{msi.name}' have the same size {lr.spatial_shape}: nothing to fuse")
    return scale


@dataclass
class FusionResult:
    cube: Cube
    method: str
    scale: int
    seconds: float = 0.0


# ---------------------------------------------------------------------------- classical methods
def _bicubic(lr: np.ndarray, msi: np.ndarray, scale: int, kernel: np.ndarray, phase: int, **_: Any) -> np.ndarray:
    with torch.inference_mode():
        return ops.upsample(torch.from_numpy(lr), scale, phase, out_size=msi.shape[-2:]).numpy()


def regress_hs_on_ms(lr: torch.Tensor, ms_lr: torch.Tensor, ridge: float = 1e-6) -> torch.Tensor:
    """Least-squares weights W (c + 1, C) such that L_b ≈ Σ_k W_kb M̃_k + W_cb (intercept)."""
    c = ms_lr.shape[0]
    A = torch.cat([ms_lr.reshape(c, -1), torch.ones(1, ms_lr[0].numel(), dtype=ms_lr.dtype)], 0).T  # (n, c+1)
    Y = lr.reshape(lr.shape[0], -1).T  # (n, C)
    G = A.T @ A
    G = G + ridge * torch.trace(G) / G.shape[0] * torch.eye(G.shape[0], dtype=G.dtype)
    return torch.linalg.solve(G, A.T @ Y)


def _glp_hs(lr: np.ndarray, msi: np.ndarray, scale: int, kernel: np.ndarray, phase: int, ridge: float = 1e-6, **_: Any) -> np.ndarray:
    with torch.inference_mode():
        L = torch.from_numpy(lr).double()
        M = torch.from_numpy(msi).double()
        M_lr = ops.degrade(M, kernel, scale, phase)
        W = regress_hs_on_ms(L, M_lr, ridge)  # (c+1, C)
        c = M.shape[0]
        S = torch.einsum("kb,khw->bhw", W[:c], M) + W[c][:, None, None]
        S_lr = torch.einsum("kb,khw->bhw", W[:c], M_lr) + W[c][:, None, None]
        residual = ops.upsample(L - S_lr, scale, phase, out_size=M.shape[-2:])
        return (S + residual).float().numpy()


register(FusionMethod("bicubic", "Phase-aware bicubic upsampling of the LRHSI (ignores the HRMSI)", _bicubic))
register(FusionMethod(
    "glp-hs", "Regression hypersharpening + GLP detail injection (training-free classical baseline)", _glp_hs,
    options={"ridge": 1e-6},
))


def fuse(
    lr: Cube,
    msi: Cube,
    method: str = "glp-hs",
    psf: "str | PSF | dict | None" = None,
    phase: int | None = None,
    clip: bool = True,
    **options: Any,
) -> FusionResult:
    """Fuse a pair with a registered method. The scale is inferred from the sizes and checked.

    ``psf`` is the blur that relates the LRHSI to the HR scene (default: the ``recipe`` in the
    LRHSI's metadata when it was simulated, else ``weak``); ``phase`` the decimation phase
    (default the recipe's, else scale // 2). Learned methods take ``weights=``.
    """
    import time

    m = get_method(method)
    scale = check_pair(lr, msi)
    recipe = lr.meta.get("recipe") or {}
    if psf is None:
        psf = recipe.get("psf", "weak")
    if phase is None:
        phase = recipe.get("phase")
    ph = scale // 2 if phase is None else int(phase)
    kernel = PSF.parse(psf).kernel(scale)
    t0 = time.perf_counter()
    out = m.run(lr.data, msi.data, scale=scale, kernel=kernel, phase=ph, lr_cube=lr, msi_cube=msi, **options)
    secs = time.perf_counter() - t0
    if clip:
        out = np.clip(out, 0.0, 1.0)
    cube = Cube(
        np.ascontiguousarray(out, dtype=np.float32), wavelengths=lr.wavelengths, norm_scale=lr.norm_scale,
        name=f"{method} fused", source=f"{method}({lr.name}, {msi.name})",
        meta={"method": method, "scale": scale, "psf": PSF.parse(psf).to_json()},
    )
    return FusionResult(cube=cube, method=method, scale=scale, seconds=secs)


def iter_methods() -> Iterator[FusionMethod]:
    _load_plugins()
    yield from _REGISTRY.values()
