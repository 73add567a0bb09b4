"""Estimate the degradations that relate an LRHSI to its HRMSI, from the pair alone.

The observation model (``../shared/PROTOCOL.md``) is ``LR = D_p(B * X)`` and ``MSI = R · X``:
blur ``B`` (the PSF), decimation by ``s`` at phase ``p`` and the spectral response ``R`` (c × C).
Blurring and decimating the MSI gives ``D_p(B * MSI) = R · D_p(B * X) = R · LR``: on the LRHSI's
grid the MSI, degraded by the right PSF, is a non-negative linear combination of the HS bands.
So, with the scale ``s`` inferred from the sizes:

* for a candidate PSF and phase, the SRF is the non-negative least-squares fit of every
  degraded MSI band on the HS bands, with a small second-difference penalty along the HS bands
  (response curves are smooth; HS bands are strongly correlated, so a plain fit is spiky);
* the PSF is a Gaussian whose sigma (and the decimation phase) minimise the relative residual
  of that fit: a grid search, then a golden-section refinement of sigma. The search covers
  Gaussians centred on an HR pixel and Gaussians centred half a pixel after it (an even number
  of taps: samples between HR pixels, as block-averaging sensors, MATLAB's ``imresize`` and the
  ``dhif`` protocols make them), and the ``dhif`` protocols' own s×s kernel, which wins when it
  fits better than every Gaussian;
* optionally a free ``k × k`` non-negative kernel (summing to one) is then fitted by least squares
  with the SRF fixed, and the SRF refitted once with it.

Either estimate can be replaced by a preset (``psf="wald"``, ``srf="ikonos"``); the other is then
fitted with it fixed. No Qt or napari dependency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import nnls

from napari_cofusion.core import ops
from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError
from napari_cofusion.degrade.simulate import PSF, default_phase, half_gaussian_kernel, infer_scale

__all__ = ["Degradation", "estimate_degradation", "estimate_doubts", "fit_srf", "srf_residual", "DOUBTFUL_RESIDUAL",
           "EDGE_FRACTION"]

MAX_PIXELS = 20000  # LR pixels used by the fits (a fixed, evenly spaced subset beyond this)
#: a fit residual above this makes an estimate doubtful: simulated pairs fit to ~1e-7 (noise-free)
#: and ~1e-2 (40 dB SNR), the real Houston 2018 pair 0.23; a PSF stuck at the end of its range
#: on a pair that does not follow the model gave 0.38
DOUBTFUL_RESIDUAL = 0.1
#: a sigma within this fraction (in log scale, of the search range) of either end is "at the edge"
EDGE_FRACTION = 0.03


@dataclass
class Degradation:
    """Estimated (or given) degradations of a pair. ``srf`` is (c, C); ``kernel`` the 2-D PSF."""

    scale: int
    phase: int
    kernel: np.ndarray
    srf: np.ndarray
    psf: dict[str, Any]  # PSF json (gaussian with sigma, or an array kernel, or the preset)
    sigma: float | None = None
    residual: float = float("nan")  # relative RMS of D(B*MSI) − R·LR on the LR grid
    psf_estimated: bool = True
    srf_estimated: bool = True
    srf_name: str = "estimated"
    hs_wavelengths: list[float] | None = None
    search: dict[str, Any] = field(default_factory=dict)  # sigma/phase grid and residuals

    def psf_obj(self) -> PSF:
        return PSF.parse(self.psf)

    def describe(self) -> str:
        if self.sigma is not None and self.psf.get("kind") == "gaussian":
            n = self.psf.get("size") or self.kernel.shape[0]
            p = f"Gaussian σ {self.sigma:.3f} px ({n}×{n}" + (", centred between HR pixels)" if self.psf.get("half") else ")")
        elif self.psf.get("kind") == "dhif":
            p = f"dhif (the {self.scale}×{self.scale} Gaussian of the dhif protocols, centred between HR pixels)"
        else:
            p = f"{self.psf.get('kind')} kernel {self.kernel.shape[0]}×{self.kernel.shape[1]}"
        p += " (estimated)" if self.psf_estimated else " (given)"
        r = f"SRF {self.srf.shape[0]}×{self.srf.shape[1]} " + ("(estimated)" if self.srf_estimated else f"({self.srf_name})")
        oy, ox = ops.sample_offset(self.kernel)
        at = f"phase {self.phase}" + (f" (samples at s·i + {self.phase + oy:g})" if oy or ox else "")
        return f"×{self.scale}, {at}, PSF {p}, {r}, fit residual {self.residual:.4f}"

    def to_json(self) -> dict[str, Any]:
        return {
            "scale": self.scale, "phase": self.phase, "psf": self.psf, "sigma": self.sigma,
            "kernel": self.kernel.tolist(), "srf": {"name": self.srf_name, "matrix": self.srf.tolist()},
            "residual": self.residual, "psf_estimated": self.psf_estimated, "srf_estimated": self.srf_estimated,
            "hs_wavelengths": self.hs_wavelengths,
            # why the estimate is doubtful (empty when it is not): recorded in cards and --json
            "doubts": estimate_doubts(self),
        }


# ---------------------------------------------------------------------------- the SRF fit
def _second_difference(n: int) -> np.ndarray:
    if n < 3:
        return np.zeros((0, n))
    d = np.zeros((n - 2, n))
    for i in range(n - 2):
        d[i, i:i + 3] = (1.0, -2.0, 1.0)
    return d


def _pixels(a: np.ndarray) -> np.ndarray:
    """(C, h, w) → (N, C) rows, at most MAX_PIXELS of them, evenly spaced."""
    flat = a.reshape(a.shape[0], -1).T
    if flat.shape[0] > MAX_PIXELS:
        idx = np.linspace(0, flat.shape[0] - 1, MAX_PIXELS).round().astype(int)
        flat = flat[idx]
    return np.ascontiguousarray(flat, dtype=np.float64)


class SRFSolver:
    """The SRF fit of :func:`fit_srf` for one LRHSI and many degraded MSIs (the PSF search): the
    LRHSI's side of the least-squares problem is factored once (a QR of the HS pixels stacked
    on the smoothness penalty), so each candidate costs one projection and a C×C non-negative
    solve instead of an N×C one. Same minimiser: ``‖A x − b‖² = ‖R x − Qᵀb‖² + const``."""

    def __init__(self, lr: np.ndarray, smooth: float = 1e-3) -> None:
        A = _pixels(lr)
        C = A.shape[1]
        D = _second_difference(C)
        lam = smooth * float(np.trace(A.T @ A)) / C
        A_aug = np.vstack([A, math.sqrt(lam) * D]) if D.size else A
        self._A, self._n = A, A.shape[0]
        self._Q, self._R = np.linalg.qr(A_aug)
        self._C = C

    def fit(self, msi_lr: np.ndarray) -> tuple[np.ndarray, float]:
        B = _pixels(msi_lr)
        Qb = self._Q[: self._n].T @ B  # the penalty rows of the target are zero
        R = np.zeros((B.shape[1], self._C))
        for k in range(B.shape[1]):
            R[k], _ = nnls(self._R, Qb[:, k], maxiter=50 * self._C)
        res = np.linalg.norm(B - self._A @ R.T) / max(np.linalg.norm(B), 1e-12)
        return R, float(res)


def fit_srf(lr: np.ndarray, msi_lr: np.ndarray, smooth: float = 1e-3) -> tuple[np.ndarray, float]:
    """Non-negative R (c, C) with ``msi_lr ≈ R · lr`` on the LR grid, and the relative residual
    ``‖msi_lr − R·lr‖ / ‖msi_lr‖``. ``smooth`` weighs a second-difference penalty along the HS
    bands, relative to the data term's scale."""
    return SRFSolver(lr, smooth).fit(msi_lr)


def srf_residual(lr: np.ndarray, msi: np.ndarray, R: np.ndarray, kernel: np.ndarray, scale: int, phase: int) -> float:
    """Relative residual of ``D_p(B * MSI) ≈ R · LR`` for a given SRF and PSF."""
    return srf_misfit(lr, _degrade(msi, kernel, scale, phase, lr.shape[-2:]), R)


def srf_misfit(lr: np.ndarray, msi_lr: np.ndarray, R: np.ndarray) -> float:
    """``‖msi_lr − R·lr‖ / ‖msi_lr‖`` over every LR pixel (the MSI already degraded to the LR grid)."""
    pred = np.einsum("kc,chw->khw", R, lr)
    return float(np.linalg.norm(msi_lr - pred) / max(np.linalg.norm(msi_lr), 1e-12))


def _degrade(msi: np.ndarray, kernel: np.ndarray, scale: int, phase: int, lr_hw) -> np.ndarray:
    with torch.inference_mode():
        out = ops.degrade(torch.from_numpy(np.ascontiguousarray(msi, dtype=np.float32)), kernel, scale, phase).numpy()
    return out[:, : lr_hw[0], : lr_hw[1]].astype(np.float64)


def _gaussian(sigma: float, half: bool = False) -> np.ndarray:
    return half_gaussian_kernel(sigma) if half else ops.gaussian_kernel(2 * math.ceil(3 * sigma) + 1, sigma)


# ---------------------------------------------------------------------------- the PSF fit
def _fit_free_kernel(lr: np.ndarray, msi: np.ndarray, R: np.ndarray, scale: int, phase: int, size: int) -> np.ndarray:
    """Non-negative ``size × size`` kernel (sum 1) with ``D_p(K * MSI) ≈ R · LR``."""
    target = np.einsum("kc,chw->khw", R, lr).ravel()
    cols = []
    for a in range(size):
        for b in range(size):
            delta = np.zeros((size, size))
            delta[a, b] = 1.0
            cols.append(_degrade(msi, delta, scale, phase, lr.shape[-2:]).ravel())
    A = np.stack(cols, axis=1)
    if A.shape[0] > MAX_PIXELS * 3:
        idx = np.linspace(0, A.shape[0] - 1, MAX_PIXELS * 3).round().astype(int)
        A, target = A[idx], target[idx]
    k, _ = nnls(A, target, maxiter=50 * size * size)
    if k.sum() <= 0:
        raise CubeError("the free PSF kernel fit failed (all zero): use a Gaussian or a preset PSF")
    return (k / k.sum()).reshape(size, size)


def estimate_degradation(
    lr: "Cube | np.ndarray",
    msi: "Cube | np.ndarray",
    psf: "str | PSF | dict | None" = None,
    srf: "Any" = None,
    phase: int | None = None,
    free_kernel: int | None = None,
    smooth: float = 1e-3,
    sigma_range: tuple[float, float] | None = None,
) -> Degradation:
    """Estimate the PSF (Gaussian sigma, decimation phase) and the SRF of an (LRHSI, HRMSI) pair.

    ``psf``: None to estimate, or a preset / spec to fix it. ``srf``: None to estimate, or a preset
    name, an SRF or a (c, C) matrix to fix it. ``phase``: None to estimate it together with the
    PSF (when the PSF is estimated; else the PROTOCOL phase ``s // 2``). ``free_kernel``: an odd
    size to refine the Gaussian into a free non-negative kernel of that size.
    """
    from napari_cofusion.core.srf import get_srf

    lr_a = lr.data if isinstance(lr, Cube) else np.asarray(lr, dtype=np.float32)
    ms_a = msi.data if isinstance(msi, Cube) else np.asarray(msi, dtype=np.float32)
    if lr_a.ndim != 3 or ms_a.ndim != 3:
        raise CubeError(f"need two (bands, rows, columns) cubes, got shapes {lr_a.shape} and {ms_a.shape}")
    if lr_a.shape[0] <= ms_a.shape[0]:
        raise CubeError(f"the LRHSI has {lr_a.shape[0]} bands and the HRMSI {ms_a.shape[0]}: the LRHSI must have more")
    if not (np.isfinite(lr_a).all() and np.isfinite(ms_a).all()):
        raise CubeError("the pair holds NaN or Inf values: cannot estimate its degradations")
    s = infer_scale(lr_a.shape, ms_a.shape)
    if s < 2:
        raise CubeError("the LRHSI and the HRMSI have the same size: nothing to estimate")
    h, w = lr_a.shape[-2:]
    if h < 3 or w < 3:
        raise CubeError(f"the LRHSI is {h}×{w} pixels: too small to estimate the degradations (3×3 at least)")
    ms_a = ms_a[:, : h * s, : w * s]
    lr64 = lr_a.astype(np.float64)
    wl = lr.wavelengths.tolist() if isinstance(lr, Cube) and lr.wavelengths is not None else None
    C, c = lr_a.shape[0], ms_a.shape[0]

    R_fixed = None
    srf_name = "estimated"
    if srf is not None:
        if isinstance(srf, np.ndarray):
            R_fixed = np.asarray(srf, dtype=np.float64)
            srf_name = "matrix"
        else:
            obj = get_srf(srf)
            R_fixed = obj.matrix_for(C, None if wl is None else np.asarray(wl))
            srf_name = obj.name
        if R_fixed.shape != (c, C):
            raise CubeError(f"the SRF {srf_name!r} is {R_fixed.shape[0]}×{R_fixed.shape[1]} but the pair needs "
                            f"{c}×{C} ({c} MSI bands from {C} HS bands)")

    solver = SRFSolver(lr64, smooth) if R_fixed is None else None

    def fit(kernel: np.ndarray, ph: int) -> tuple[np.ndarray, float]:
        m = _degrade(ms_a, kernel, s, ph, (h, w))
        if R_fixed is not None:
            return R_fixed, srf_misfit(lr64, m, R_fixed)
        return solver.fit(m)

    search: dict[str, Any] = {}
    if psf is not None:
        p_obj = PSF.parse(psf)
        kernel = p_obj.kernel(s)
        ph = s // 2 if phase is None else int(phase)
        R, res = fit(kernel, ph)
        return Degradation(s, ph, kernel, R, p_obj.to_json(), p_obj.sigma, res, psf_estimated=False,
                           srf_estimated=R_fixed is None, srf_name=srf_name, hs_wavelengths=wl)

    lo, hi = sigma_range or (0.2, 0.9 * s)
    grid = np.geomspace(lo, hi, 18)
    # (phase, centred half a pixel after it) candidates
    centres = [(int(phase), half) for half in (False, True)] if phase is not None else \
        [(p, half) for half in (False, True) for p in range(s)]
    table = np.full((len(centres), grid.size), np.inf)
    for i, (ph, half) in enumerate(centres):
        for j, sg in enumerate(grid):
            table[i, j] = fit(_gaussian(float(sg), half), ph)[1]
    i, j = np.unravel_index(int(np.argmin(table)), table.shape)
    ph, half = centres[i]
    search = {"phases": [c[0] for c in centres], "half": [c[1] for c in centres], "sigmas": grid.tolist(),
              "residuals": table.tolist(), "range": [float(lo), float(hi)]}
    # golden-section refinement of sigma between the grid neighbours
    a, b = grid[max(j - 1, 0)], grid[min(j + 1, grid.size - 1)]
    g = (math.sqrt(5) - 1) / 2
    f = lambda sg: fit(_gaussian(float(sg), half), ph)[1]  # noqa: E731
    x1, x2 = b - g * (b - a), a + g * (b - a)
    f1, f2 = f(x1), f(x2)
    for _ in range(14):
        if f1 < f2:
            b, x2, f2 = x2, x1, f1
            x1 = b - g * (b - a)
            f1 = f(x1)
        else:
            a, x1, f1 = x1, x2, f2
            x2 = a + g * (b - a)
            f2 = f(x2)
    sigma = float((a + b) / 2)
    kernel = _gaussian(sigma, half)
    R, res = fit(kernel, ph)
    psf_json: dict[str, Any] = {"kind": "gaussian", "size": int(kernel.shape[0]) - (1 if half else 0),
                                "sigma": round(sigma, 5), **({"half": True} if half else {})}
    d_ph = default_phase("dhif", s)
    if s % 2 == 0 and (phase is None or int(phase) == d_ph):
        # the dhif protocols' s×s kernel (a truncated Gaussian no member of the family equals)
        dk = PSF(kind="dhif").kernel(s)
        dR, dres = fit(dk, d_ph)
        search["dhif"] = float(dres)
        if dres < res:
            kernel, R, res, ph, sigma, psf_json = dk, dR, dres, d_ph, 2.0, {"kind": "dhif"}
    if free_kernel:
        size = int(free_kernel)
        if size < 1 or size % 2 == 0:
            raise CubeError(f"the free kernel size must be a positive odd number, got {free_kernel}")
        kernel = _fit_free_kernel(lr64, ms_a, R, s, ph, size)
        R, res = fit(kernel, ph)
        psf_json = {"kind": "array", "kernel_values": kernel.tolist()}
    return Degradation(s, ph, kernel, R, psf_json, sigma, res, psf_estimated=True, srf_estimated=R_fixed is None,
                       srf_name=srf_name, hs_wavelengths=wl, search=search)


def estimate_doubts(deg: Degradation) -> list[str]:
    """Why the estimate ``deg`` should not be trusted (empty when nothing is wrong), in words a user
    can act on: a Gaussian sigma at either end of its search range (the true blur may lie outside
    it, or the pair does not follow the blur-and-decimate model), and a large fit residual (above
    :data:`DOUBTFUL_RESIDUAL`: the PSF and a linear SRF do not explain the pair, e.g. misregistered
    images, different scenes or a non-linear sensor)."""
    reasons: list[str] = []
    rng = deg.search.get("range") if deg.psf_estimated else None
    if rng and deg.sigma is not None and rng[0] > 0 and rng[1] > rng[0]:
        lo, hi = math.log(rng[0]), math.log(rng[1])
        pos = (math.log(max(deg.sigma, 1e-12)) - lo) / (hi - lo)
        if pos <= EDGE_FRACTION or pos >= 1 - EDGE_FRACTION:
            end = "lower" if pos <= EDGE_FRACTION else "upper"
            reasons.append(f"the PSF sigma {deg.sigma:.3f} px is at the {end} end of its search range "
                           f"({rng[0]:.2f}–{rng[1]:.2f} px): the blur may be outside it; try a preset PSF")
    if np.isfinite(deg.residual) and deg.residual > DOUBTFUL_RESIDUAL:
        reasons.append(f"the fit residual {deg.residual:.3f} is large (above {DOUBTFUL_RESIDUAL:g}): the PSF and a "
                       "linear SRF do not explain the pair well (misregistered images, different scenes or "
                       "a sensor the model does not fit); check the pair before relying on the estimate")
    return reasons
