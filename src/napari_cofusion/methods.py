"""The fusion-method registry: every way of turning (LRHSI, HRMSI) into an HR hyperspectral cube.

Classical, training-free methods live here; learned models register themselves the same way
(:func:`register`). Use :func:`fuse` from Python, the CLI and the GUI alike.

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
    #: ``defaults(lr, msi, scale, options) -> {"psf": ..., "phase": ...}``: the degradations to
    #: assume when neither the call nor the LRHSI's recipe gives them (e.g. the weights card's)
    defaults: Callable[..., dict[str, Any]] | None = None
    #: the data-consistency step (``napari_cofusion.consistency``) used when ``fuse`` is not told:
    #: "off" for the classical baselines (kept as defined), "auto" for the learned model
    consistency: str = "off"


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
    if lr.bands <= msi.bands:
        raise CubeError(
            f"the LRHSI '{lr.name}' has {lr.bands} bands and the HRMSI '{msi.name}' {msi.bands}: the hyperspectral "
            "input must have more bands than the multispectral one (are the two swapped, or is the HRMSI a "
            "hyperspectral cube?)"
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
    consistency: dict[str, Any] | None = None  # the data-consistency step's report, when it ran


# ---------------------------------------------------------------------------- classical methods
def _bicubic(lr: np.ndarray, msi: np.ndarray, scale: int, kernel: np.ndarray, phase: int, **_: Any) -> np.ndarray:
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


def _glp_hs(lr: np.ndarray, msi: np.ndarray, scale: int, kernel: np.ndarray, phase: int,
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


register(FusionMethod("bicubic", "Phase-aware bicubic upsampling of the LRHSI (ignores the HRMSI)", _bicubic))
register(FusionMethod(
    "glp-hs", "Local-regression hypersharpening + detail injection (training-free classical baseline)", _glp_hs,
    options={"radius": 2, "eps": 1e-8},
))


def fuse(
    lr: Cube,
    msi: Cube,
    method: str = "glp-hs",
    psf: "str | PSF | dict | None" = None,
    phase: int | None = None,
    clip: bool = True,
    consistency: str | None = None,
    **options: Any,
) -> FusionResult:
    """Fuse a pair with a registered method. The scale is inferred from the sizes and checked.

    ``psf`` is the blur that relates the LRHSI to the HR scene (default: the ``recipe`` in the
    LRHSI's metadata when it was simulated, else ``weak``); ``phase`` the decimation phase
    (default the recipe's, else scale // 2). Learned methods take ``weights=``.
    ``consistency`` ("auto", "on", "off"; default: the method's) projects the result onto the
    observations (:mod:`napari_cofusion.consistency`); its report is ``FusionResult.consistency``
    and the cube's ``meta["consistency"]``.
    """
    import time

    m = get_method(method)
    scale = check_pair(lr, msi)
    recipe = lr.meta.get("recipe") or {}
    if m.defaults is not None and (psf is None or phase is None) and not recipe:
        d = m.defaults(lr, msi, scale, options)
        psf = d.get("psf") if psf is None else psf
        phase = d.get("phase") if phase is None else phase
    if psf is None:
        psf = recipe.get("psf", "weak")
    if phase is None:
        phase = recipe.get("phase")
    ph = scale // 2 if phase is None else int(phase)
    kernel = PSF.parse(psf).kernel(scale)
    t0 = time.perf_counter()
    out = m.run(lr.data, msi.data, scale=scale, kernel=kernel, phase=ph, lr_cube=lr, msi_cube=msi, **options)
    mode = m.consistency if consistency is None else consistency
    report = None
    if mode != "off" or consistency is not None:
        from .consistency import enforce

        out, rep = enforce(np.clip(out, 0.0, 1.0), lr.data, msi.data, kernel, scale, ph, mode)
        report = rep.to_json()
    secs = time.perf_counter() - t0
    if clip:
        out = np.clip(out, 0.0, 1.0)
    used = {}
    if m.needs_weights and options.get("model") is None:  # say which weights file the method picked
        from .weights import resolve_weights

        used = {"weights": resolve_weights(options.get("weights"), lr.bands, msi.bands, scale).name}
    cube = Cube(
        np.ascontiguousarray(out, dtype=np.float32), wavelengths=lr.wavelengths, norm_scale=lr.norm_scale,
        name=f"{method} fused", source=f"{method}({lr.name}, {msi.name})",
        meta={"method": method, "scale": scale, "psf": PSF.parse(psf).to_json(), **used,
              **({"consistency": report} if report else {})},
    )
    return FusionResult(cube=cube, method=method, scale=scale, seconds=secs, consistency=report)


def iter_methods() -> Iterator[FusionMethod]:
    _load_plugins()
    yield from _REGISTRY.values()
