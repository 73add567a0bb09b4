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
    gains 1.3–2.5 dB PSNR over the global one. The registered method's default (``radius="auto"``)
    chooses the regression from the pair, band by band (:func:`select_regularisation`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import torch

from napari_cofusion.core import ops
from napari_cofusion.core.errors import CubeError
from napari_cofusion.fusion.registry import FusionMethod, register

__all__ = ["local_regression", "select_regularisation", "candidate_name", "glp_hs", "prepare_glp_hs", "bicubic", "glp_hs_reach", "CANDIDATES"]


def bicubic(lr: np.ndarray, msi: np.ndarray, scale: int, kernel: np.ndarray, phase: int, **_: Any) -> np.ndarray:
    with torch.inference_mode():
        return ops.upsample(torch.from_numpy(lr), scale, ops.sample_centre(kernel, phase), out_size=msi.shape[-2:]).numpy()


def _box_mean(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over a (2r+1)² window with reflect padding, for a (N, H, W) stack."""
    xp = ops._pad_reflect(x[None], r, r)
    return torch.nn.functional.avg_pool2d(xp, 2 * r + 1, stride=1)[0]


def _weighted_mean(t: torch.Tensor, w: torch.Tensor | None, r: int) -> torch.Tensor:
    """Mean of a (N, h, w) stack over (2r+1)² windows (``r = 0``: the whole frame), each pixel
    counted with weight ``w`` (h, w) (None: all 1; 0 leaves a pixel out of every window)."""
    if r <= 0:
        m = t.mean((-1, -2), keepdim=True) if w is None else (t * w).sum((-1, -2), keepdim=True) / w.sum()
        return m.expand(*t.shape)
    if w is None:
        return _box_mean(t, r)
    return _box_mean(t * w, r) / _box_mean(w[None], r).clamp_min(1e-12)


def _moments(lr: torch.Tensor, ms_lr: torch.Tensor, weight: torch.Tensor | None, r: int) -> tuple[torch.Tensor, ...]:
    """Window means of the MS and HS bands, (c, h, w) and (C, h, w), and the windows' MS
    covariance (c, c, h, w) and MS–HS cross-covariance (c, C, h, w) (``r = 0``: the whole frame)."""
    hw = lr.shape[-2:]
    mean = lambda t: _weighted_mean(t.reshape(-1, *hw), weight, r).reshape(t.shape)  # noqa: E731
    mM, mL = mean(ms_lr), mean(lr)
    MM = mean(torch.einsum("khw,lhw->klhw", ms_lr, ms_lr)) - torch.einsum("khw,lhw->klhw", mM, mM)
    ML = mean(torch.einsum("khw,bhw->kbhw", ms_lr, lr)) - torch.einsum("khw,bhw->kbhw", mM, mL)
    return mM, mL, MM, ML


def local_regression(lr: torch.Tensor, ms_lr: torch.Tensor, radius: int, eps: float, shrink: float = 0.0,
                     weight: torch.Tensor | None = None, scene: dict[str, Any] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel least squares L_b ≈ Σ_k a_kb M̃_k + b_b over (2r+1)² LR windows (a multi-channel
    guided filter): returns a (c, C, h, w) and b (C, h, w), smoothed over the same windows.
    ``radius=0`` fits one global regression for the whole scene. ``shrink`` pulls each window's
    coefficients towards the global fit's (a ridge of ``shrink`` × the MS bands' mean variance
    centred on them: 0 is the plain local fit, large values the global one). ``weight`` (h, w)
    counts pixels in the fit (0: left out; :func:`select_regularisation` holds pixels out this way).

    ``scene`` (:func:`global_fit` of the whole pair, for these bands) is the global fit to use
    instead of this frame's own: a block of a block-wise run then gives what the whole frame gives."""
    r = max(int(radius), 0)
    if scene is not None and r == 0:
        a_g = torch.as_tensor(np.asarray(scene["a"]), dtype=lr.dtype)  # (c, C)
        b_g = torch.as_tensor(np.asarray(scene["b"]), dtype=lr.dtype)
        hw = lr.shape[-2:]
        return a_g[:, :, None, None].expand(*a_g.shape, *hw), b_g[:, None, None].expand(-1, *hw)
    target = None
    if r > 0 and shrink > 0:
        target = ((torch.as_tensor(np.asarray(scene["a"]), dtype=lr.dtype), float(scene["variance"]))
                  if scene is not None else _global_target(_moments(lr, ms_lr, weight, 0), eps))
    return _solve(_moments(lr, ms_lr, weight, r), r, eps, shrink, target)


def _global_target(glob: tuple[torch.Tensor, ...], eps: float) -> tuple[torch.Tensor, float]:
    """From the global moments (:func:`_moments` with r = 0): the global fit's coefficients (c, C)
    and the MS bands' mean variance (+ eps), which scales the shrink's ridge."""
    _, _, gMM, gML = (t[..., 0, 0] for t in glob)
    gMM = gMM + eps * torch.eye(gMM.shape[0], dtype=gMM.dtype)
    return torch.linalg.solve(gMM, gML), float(torch.diagonal(gMM).mean())


def global_fit(lr: torch.Tensor, ms_lr: torch.Tensor, eps: float) -> dict[str, Any]:
    """The whole pair's global regression L_b ≈ Σ_k a_kb M̃_k + b_b: ``a`` (c, C) and ``b`` (C,)
    as lists, and ``variance``, the MS bands' mean variance (+ eps) that scales the shrink's ridge.
    :func:`prepare_glp_hs` makes it once for the scene, so that the global candidate and the
    shrink's target are the scene's in every block, not each block's own."""
    moments = _moments(lr, ms_lr, None, 0)
    a, variance = _global_target(moments, eps)
    b = moments[1][:, 0, 0] - torch.einsum("kb,k->b", a, moments[0][:, 0, 0])
    return {"a": a.tolist(), "b": b.tolist(), "variance": variance}


def _solve(moments: tuple[torch.Tensor, ...], r: int, eps: float, shrink: float,
           target: tuple[torch.Tensor, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`local_regression` from the window moments and, for ``shrink``, the ``target``
    (:func:`_global_target`: the global coefficients (c, C) and the MS bands' variance)."""
    mM, mL, MM, ML = moments
    c = mM.shape[0]
    eye = torch.eye(c, dtype=MM.dtype)[:, :, None, None]
    MM = MM + eps * eye
    if r > 0 and shrink > 0:
        a_global, variance = target
        ridge = shrink * variance
        MM = MM + ridge * eye
        ML = ML + ridge * a_global[:, :, None, None]
    a = _spd_solve(MM, ML)
    b = mL - torch.einsum("kbhw,khw->bhw", a, mM)
    if r == 0:
        return a, b
    return _box_mean(a.reshape(-1, *a.shape[-2:]), r).reshape(a.shape), _box_mean(b, r)


def _spd_solve(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """X with ``A[..., p] X[..., p] = B[..., p]`` at every pixel p: A (c, c, h, w) symmetric
    positive definite (a regularised covariance), B (c, n, h, w). Cholesky with the c×c loops
    written out over whole pixel planes: a few elementwise passes instead of one small LAPACK call
    per pixel (``torch.linalg.solve`` over a 512² HR frame, c = 3, took 1.5 s of a 3.8 s guided
    filter). Same result to round-off."""
    c = A.shape[0]
    L = [[None] * c for _ in range(c)]
    for j in range(c):
        d = A[j, j] - sum((L[j][k] ** 2 for k in range(j)), torch.zeros_like(A[j, j]))
        L[j][j] = d.clamp_min(torch.finfo(A.dtype).tiny).sqrt()
        for i in range(j + 1, c):
            L[i][j] = (A[i, j] - sum((L[i][k] * L[j][k] for k in range(j)), torch.zeros_like(A[i, j]))) / L[j][j]
    y: list[torch.Tensor] = []
    for j in range(c):  # L y = B
        y.append((B[j] - sum((L[j][k] * y[k] for k in range(j)), torch.zeros_like(B[j]))) / L[j][j])
    x: list[torch.Tensor | None] = [None] * c
    for j in reversed(range(c)):  # Lᵀ x = y
        x[j] = (y[j] - sum((L[k][j] * x[k] for k in range(j + 1, c)), torch.zeros_like(B[j]))) / L[j][j]
    return torch.stack(x)


#: the (radius, shrink) pairs :func:`select_regularisation` chooses from: the global regression,
#: and local windows of radius 1–4 LR pixels with their coefficients pulled towards the global
#: ones by 0 (the plain local fit), 0.01, 0.1 or 1. The plain 3×3 fit (radius 1, shrink 0) is left
#: out: it predicts held-out LR pixels well but its coefficients are too noisy for the HR detail
#: they multiply (DC Mall ×4: the best held-out error of all, and 0.65 dB below radius 1 with
#: shrink 0.01)
CANDIDATES: tuple[tuple[int, float], ...] = ((0, 0.0),) + tuple(
    (r, s) for r in (1, 2, 3, 4) for s in (0.0, 0.01, 0.1, 1.0) if (r, s) != (1, 0.0))
#: how many candidates :func:`select_regularisation` averages per band (the ones with the lowest
#: held-out errors). Gains over the global fit on the scene table (benchmarks/scene_finetune.py,
#: estimated PSF), mean over six scenes ×4 / ×8 and the worst scene, with 1 / 2 / 3 / 4 members:
#: +0.86 / +0.97 / +0.94 / +0.88 and +0.40 / +0.46 / +0.48 / +0.46 dB; worst −0.18 / +0.00 /
#: +0.05 / +0.07 (DC Mall ×8 each time)
MEMBERS = 3
#: the LR side of the central crop the held-out test is made on (a larger scene is cropped: the
#: choice is the scene's, the same for every block of a block-wise run)
SELECTION_SIDE = 192
#: the HR side of the central crop the MS cross-prediction test is made on
CROSS_SIDE = 512


def candidate_name(radius: int, shrink: float) -> str:
    """``r0`` (the global fit) or ``r{radius}/s{shrink}``: how the selection's records name a candidate."""
    return f"r{int(radius)}" + (f"/s{float(shrink):g}" if radius else "")


def _held_out_errors(lr: np.ndarray, ms_lr: np.ndarray, eps: float,
                     candidates: tuple[tuple[int, float], ...]) -> tuple[np.ndarray, float]:
    """Squared held-out errors (K candidates, C bands) on the central crop, and ‖LR‖² there. Four
    folds, the LR pixels split by the parity of their row and column: each fold is fitted on the
    other three and scored on its own, as the upsampled coefficients are used between the LR
    samples they were fitted on."""
    L = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float64))
    Mt = torch.from_numpy(np.ascontiguousarray(ms_lr, dtype=np.float64))
    h, w = L.shape[-2:]
    y0, x0 = max((h - SELECTION_SIDE) // 2, 0), max((w - SELECTION_SIDE) // 2, 0)
    L, Mt = L[:, y0:y0 + SELECTION_SIDE, x0:x0 + SELECTION_SIDE], Mt[:, y0:y0 + SELECTION_SIDE, x0:x0 + SELECTION_SIDE]
    h, w = L.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    fold = (yy % 2) * 2 + (xx % 2)
    index = {rs: i for i, rs in enumerate(candidates)}
    err = torch.zeros(len(candidates), L.shape[0], dtype=torch.float64)
    with torch.inference_mode():
        for f in range(4):
            held = fold == f
            weight = (~held).double()
            glob = _moments(L, Mt, weight, 0)  # shared by every radius of this fold
            target = _global_target(glob, eps)  # and the target of every shrink
            for r in sorted({r for r, _ in candidates}):
                moments = glob if r == 0 else _moments(L, Mt, weight, r)  # shared by the shrinks of r
                for rs in (rs for rs in candidates if rs[0] == r):
                    a, b = _solve(moments, r, eps, rs[1], target)
                    pred = torch.einsum("kbhw,khw->bhw", a, Mt) + b
                    err[index[rs]] += ((pred - L) ** 2)[:, held].sum(1)
    return err.numpy(), float((L ** 2).sum())


def _cross_errors(ms_lr: np.ndarray, msi: np.ndarray, scale: int, kernel: np.ndarray, phase: int, eps: float,
                  candidates: tuple[tuple[int, float], ...]) -> np.ndarray:
    """Relative HR error of each candidate when it predicts every MS band from the others (fitted
    on the LR grid, applied to the HR bands, as glp-hs applies its fit), on a central HR crop."""
    c, H, W = msi.shape
    side = max(CROSS_SIDE // scale, 1)
    h, w = ms_lr.shape[-2:]
    y0, x0 = max((h - side) // 2, 0), max((w - side) // 2, 0)
    lr_c = np.ascontiguousarray(ms_lr[:, y0:y0 + side, x0:x0 + side], dtype=np.float32)
    hs, ws = lr_c.shape[-2:]
    ms_c = np.ascontiguousarray(msi[:, y0 * scale:(y0 + hs) * scale, x0 * scale:(x0 + ws) * scale])
    out = np.zeros(len(candidates))
    norm = float((ms_c.astype(np.float64) ** 2).sum())
    for i, (r, s) in enumerate(candidates):
        for j in range(c):
            others = [k for k in range(c) if k != j]
            z = glp_hs(lr_c[j:j + 1], np.ascontiguousarray(ms_c[others]), scale, kernel, phase, radius=r, eps=eps,
                       shrink=s)[0]
            out[i] += float(((z - ms_c[j]).astype(np.float64) ** 2).sum())
    return np.sqrt(out / max(norm, 1e-30))


def select_regularisation(lr: np.ndarray, ms_lr: np.ndarray, eps: float = 1e-8,
                          candidates: tuple[tuple[int, float], ...] = CANDIDATES, msi: np.ndarray | None = None,
                          scale: int | None = None, kernel: np.ndarray | None = None,
                          phase: int | None = None, members: int = MEMBERS) -> dict[str, Any]:
    """Choose glp-hs's regression, band by band, from the pair itself.

    1. **What the LR grid cannot show** (given ``msi``, ``scale``, ``kernel``, ``phase``, and two
       or more MS bands): each candidate predicts every HR MS band from the other MS bands, fitted
       on the LR grid and applied at HR exactly as glp-hs applies its fit to the HS bands.
       Candidates that do worse than the global fit there are left out: their coefficients vary
       where the LR grid has no detail to fit, and the HR detail they multiply turns that into
       error (the CAVE paints scene seen by a 3-band camera at ×8: the plain 5×5 fit has the lowest
       held-out LR error and is 1.3 dB below radius 1 with shrink 0.01).
    2. **Per HS band, the held-out LR error** (:func:`_held_out_errors`): the ``members``
       remaining candidates whose fits best predict LR pixels they were not given, averaged (their
       coefficients, so their results). Bands differ: the ones the MS bands explain well gain from
       small windows, the ones they hardly see (SWIR beside a VNIR camera) from a pull towards the
       global fit. One candidate alone (``members=1``) is the noisier choice on a small LR grid:
       on DC Mall ×8 (12×12 LR pixels) the lone best is 0.18 dB below the global fit, the mean of
       the best three 0.05 dB above it (:data:`MEMBERS`).

    Returns ``{"radius", "shrink"}`` (one list of ``members`` values per band), ``"errors"``
    (candidate → relative held-out RMS error, all bands), ``"cross"`` (candidate → relative MS
    cross-prediction error, None without step 1), ``"allowed"`` (the candidates step 1 kept) and
    ``"bands"`` (candidate → how many bands count it among their members)."""
    err, norm = _held_out_errors(lr, ms_lr, eps, candidates)
    names = [candidate_name(r, s) for r, s in candidates]
    cross = None
    allowed = np.ones(len(candidates), dtype=bool)
    if msi is not None and msi.shape[0] >= 2 and scale is not None and kernel is not None and phase is not None:
        cross = _cross_errors(ms_lr, msi, int(scale), kernel, int(phase), eps, candidates)
        ref = cross[candidates.index((0, 0.0))] if (0, 0.0) in candidates else cross.max()
        allowed = cross <= ref * (1 + 1e-9)
    n = max(1, min(int(members), int(allowed.sum())))
    # stable: ties go to the earlier (more regularised first within a radius) candidate
    pick = np.argsort(np.where(allowed[:, None], err, np.inf), axis=0, kind="stable")[:n].T  # (C, n)
    counts = dict(Counter(names[k] for row in pick for k in row))
    return {"radius": [[int(candidates[k][0]) for k in row] for row in pick],
            "shrink": [[float(candidates[k][1]) for k in row] for row in pick],
            "errors": {n_: float(np.sqrt(e / max(norm, 1e-30))) for n_, e in zip(names, err.sum(1))},
            "cross": None if cross is None else {n_: float(v) for n_, v in zip(names, cross)},
            "allowed": [n_ for n_, ok in zip(names, allowed) if ok], "bands": counts}


def _per_band(value: Any, C: int, name: str) -> list:
    """A per-band option (one value for every band, or a list of C values) as a list of C."""
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) != C:
            raise CubeError(f"glp-hs: {name} has {len(value)} values but the LRHSI has {C} bands")
        return list(value)
    return [value] * C


def _members(value: Any) -> list:
    """One band's radius or shrink: a number, or a list of them (fits averaged)."""
    return list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]


def _scene_bands(scene: dict[str, Any] | None, idx: list[int] | None) -> dict[str, Any] | None:
    """:func:`global_fit`'s record for the HS bands ``idx`` (None: all)."""
    if scene is None or idx is None:
        return scene
    return {**scene, "a": np.asarray(scene["a"])[:, idx], "b": np.asarray(scene["b"])[idx]}


def _check_scene(scene: Any, c: int, C: int) -> dict[str, Any] | None:
    if scene is None:
        return None
    try:
        a, b, var = np.asarray(scene["a"], dtype=np.float64), np.asarray(scene["b"], dtype=np.float64), float(scene["variance"])
    except (KeyError, TypeError, ValueError) as e:
        raise CubeError(f"glp-hs: scene_fit must be global_fit's record (a, b, variance): {e}") from None
    if a.shape != (c, C) or b.shape != (C,) or not (np.isfinite(a).all() and np.isfinite(b).all() and var > 0):
        raise CubeError(f"glp-hs: scene_fit is for {a.shape[0] if a.ndim == 2 else '?'} MS and {b.size} HS bands "
                        f"(finite, variance > 0), this pair has {c} and {C}")
    return {"a": a, "b": b, "variance": var}


def _regression(L: torch.Tensor, M_lr: torch.Tensor, radius: Any, shrink: Any, eps: float,
                scene: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`local_regression` with a radius and shrink per band (or one for all); a band's value
    may be a list, whose fits are averaged (coefficients and offsets: glp-hs's result is linear in
    them, so this is the mean of the members' results). Each distinct (radius, shrink) is fitted
    once, on the bands that use it."""
    C = L.shape[0]
    radii, shrinks = _per_band(radius, C, "radius"), _per_band(shrink, C, "shrink")
    groups: dict[tuple[int, float], dict[int, float]] = {}  # (r, s) -> {band: weight}
    for band, (rb, sb) in enumerate(zip(radii, shrinks)):
        rs, ss = _members(rb), _members(sb)
        if len(ss) == 1 and len(rs) > 1:
            ss = ss * len(rs)
        if not rs or len(rs) != len(ss):
            raise CubeError(f"glp-hs: band {band} has {len(rs)} radii but {len(ss)} shrinks")
        for r, s in zip(rs, ss):
            if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 0 <= r <= 4:
                raise CubeError(f"glp-hs: radius = {r!r} must be a whole number from 0 to 4 (or \"auto\")")
            if isinstance(s, bool) or not isinstance(s, (int, float, np.floating, np.integer)) or not 0 <= s < float("inf"):
                raise CubeError(f"glp-hs: shrink = {s!r} must be a finite number, 0 or more")
            uses = groups.setdefault((int(r), float(s)), {})
            uses[band] = uses.get(band, 0.0) + 1.0 / len(rs)
    scene = _check_scene(scene, M_lr.shape[0], C)
    if len(groups) == 1:
        (r, s), = groups
        return local_regression(L, M_lr, r, eps, s, scene=scene)
    a = torch.zeros(M_lr.shape[0], C, *L.shape[-2:], dtype=L.dtype)
    b = torch.zeros(C, *L.shape[-2:], dtype=L.dtype)
    for (r, s), uses in groups.items():
        idx = list(uses)
        wt = torch.tensor(list(uses.values()), dtype=L.dtype)
        ag, bg = local_regression(L[idx], M_lr, r, eps, s, scene=_scene_bands(scene, idx))
        a[:, idx] += ag * wt[:, None, None]
        b[idx] += bg * wt[:, None, None]
    return a, b


def _ms_lr(msi: np.ndarray, kernel: np.ndarray, scale: int, phase: int, lr_hw: tuple[int, int]) -> torch.Tensor:
    with torch.inference_mode():
        return ops.degrade(torch.from_numpy(msi).double(), kernel, scale, phase)[..., : lr_hw[0], : lr_hw[1]]


def glp_hs(lr: np.ndarray, msi: np.ndarray, scale: int, kernel: np.ndarray, phase: int,
            radius: Any = 2, eps: float = 1e-8, shrink: Any = 0.0, scene_fit: dict[str, Any] | None = None,
            **_: Any) -> np.ndarray:
    """glp-hs with a given regression (``radius``, ``shrink``: one value, or a list with one per HS
    band; the defaults are the fixed regression CoFusion's shipped weights were trained on) or
    ``radius="auto"``: chosen from this pair, band by band, by :func:`select_regularisation` (the
    registered method's default, resolved once for the whole scene by :func:`prepare_glp_hs` when
    run through ``fuse``). ``scene_fit`` (:func:`global_fit` of the whole pair, set by
    :func:`prepare_glp_hs`): the global candidate and the shrink's target, the same in every block;
    None fits them on this (block of the) pair."""
    # the regression (small, ill-conditioned normal equations) runs in float64 at the LR size;
    # the HR work (upsampling 3·C coefficient maps, injection) in float32, which changes the
    # result by ~1e-6 and halves the time
    with torch.inference_mode():
        L = torch.from_numpy(lr).double()
        M = torch.from_numpy(msi).float()
        hw = M.shape[-2:]
        M_lr = ops.degrade(M.double(), kernel, scale, phase)
        if isinstance(radius, str):
            if radius != "auto":
                raise CubeError(f"glp-hs: radius = {radius!r} must be a whole number or \"auto\"")
            pick = select_regularisation(lr, M_lr[..., : L.shape[-2], : L.shape[-1]].numpy(), eps, msi=msi,
                                         scale=scale, kernel=kernel, phase=phase)
            radius, shrink = pick["radius"], pick["shrink"]
        a, b = _regression(L, M_lr[..., : L.shape[-2], : L.shape[-1]], radius, shrink, eps, scene_fit)
        a, b = a.float(), b.float()
        c, C = a.shape[:2]
        at = ops.sample_centre(kernel, phase)  # where the LR samples lie (between HR pixels for even PSFs)
        A = ops.upsample(a.reshape(c * C, *a.shape[-2:]), scale, at, out_size=hw).reshape(c, C, *hw)
        S = torch.einsum("kbhw,khw->bhw", A, M) + ops.upsample(b, scale, at, out_size=hw)
        residual = ops.upsample(L.float() - ops.degrade(S, kernel, scale, phase), scale, at, out_size=hw)
        return (S + residual).numpy()


def prepare_glp_hs(lr: np.ndarray, msi: np.ndarray, scale: int, kernel: np.ndarray, phase: int,
                   options: dict[str, Any]) -> dict[str, Any]:
    """Resolve ``radius="auto"`` on the whole pair (so every block of a block-wise run uses the
    same regression); the chosen radius and shrink, and the selection's errors, go to the result's
    metadata."""
    ms_lr = _ms_lr(msi, kernel, scale, phase, lr.shape[-2:])
    eps = options.get("eps", 1e-8)
    with torch.inference_mode():
        scene = global_fit(torch.from_numpy(lr).double(), ms_lr, eps)
    if options.get("radius", "auto") != "auto":
        return {**options, "scene_fit": scene}
    pick = select_regularisation(lr, ms_lr.numpy(), eps, msi=msi, scale=scale, kernel=kernel, phase=phase)
    return {**options, "radius": pick["radius"], "shrink": pick["shrink"], "selection": pick["errors"],
            "cross": pick["cross"], "allowed": pick["allowed"], "bands": pick["bands"], "scene_fit": scene}


def glp_hs_reach(scale: int, kernel: Any, radius: int = 4) -> int:
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
    options={"radius": "auto", "eps": 1e-8, "shrink": 0.0}, reach=glp_hs_reach, prepare=prepare_glp_hs,
    # float32 HR: the c·C upsampled coefficients, the synthetic bands, the residual and the result
    bytes_per_pixel=lambda C, c: 4.0 * C * (c + 5),
))
