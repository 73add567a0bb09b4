"""``pnp-gf``: fusion from the pair alone, with a prior fitted to the scene (registered on import).

For a pair from a sensor no model was trained for, with no high-resolution reference. The HR cube
X must satisfy both observations, ``LR = D_p(B * X)`` and ``MSI = R·X``, but those leave most of
its fine detail free; the prior that fills it in is the one glp-hs uses at the LR scale, taken to
the HR scale: in every small window of the HR frame, each HS band is an affine function of the MS
bands (a multi-channel guided filter with the HRMSI as guide). The method alternates (a
plug-and-play scheme) between

1. the data-consistency projection onto both observations and [0, 1]
   (:func:`napari_cofusion.degrade.consistency.project_observations`, with the SRF fitted to the
   pair, and its LR correction carried by bumps as wide as the PSF,
   :func:`~napari_cofusion.degrade.consistency.psf_spread`: the one-shot consistency step's wider
   bumps, 0.375·s, made the rounds drift below glp-hs on a sharp PSF, e.g. the ``weak`` 3×3 one:
   PaviaU ×4 −0.80 dB, DC Mall ×8 −3.8 dB at the default rounds), and
2. the HR guided filter: each band of the current cube regressed on the HRMSI over (2r+1)² HR
   windows (:func:`~napari_cofusion.fusion.classical.local_regression`, r = 2), which keeps the
   detail the HRMSI explains and drops the rest,

starting from glp-hs (its regression chosen from the pair) and ending with a projection, so the
result agrees with both observations. Every round starts from the current cube pushed on along its
last change (heavy-ball momentum, :func:`momentum_for`: 0.7 at ×4, 0.92 from ×8 up, restarted at
the pixels where a round turns back): the plain rounds approach their fixed point slowly on some
scenes (Salinas-A ×8 gains +0.72 dB at 40 rounds and +1.32 at 160). Nothing is learnt from other
scenes: the window coefficients are fitted to this scene in every round.

Measured with the PSF and phase estimated from the pair (benchmarks/scene_finetune.py, the README's
table, 2026-12-05): over glp-hs (the mean of its best three regressions per band), ×4 (20 rounds,
momentum 0.7) and ×8 (80 rounds, 0.92): the README's table. A network added after these rounds (a
small CNN in a k = 8 subspace of the LRHSI, trained on the pair with both consistency losses and
this prior, 200 steps) changed the result by ≤ 0.01 dB; trained on the pair degraded once more
(zero-shot, reduced resolution) to give the whole cube it lost 3 dB on DC Mall before the
projection. Trained the same way to correct *this method's* result, where the smaller pair is
large enough to learn from, it gains: ``pnp-zsl`` (:mod:`napari_cofusion.learn.zsl_pnp`). A per-pixel network
from the MS bands to the LRHSI's principal components, trained on the pair by the LR consistency
loss, added nothing inside the rounds either, as their start or as extra guide channels
(``benchmarks/pair_probes.py learned``, README).

It needs the observation model to hold: when the fitted SRF leaves a relative residual above
:data:`~napari_cofusion.degrade.consistency.AUTO_MAX_RESIDUAL` (a wrong PSF or phase, noise,
misregistration, a real pair such as Houston 2018), projecting would copy the misfit into the
result, so the method returns glp-hs instead, warns with the numbers, and the result's metadata
records the fallback.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
import torch

from napari_cofusion.core.errors import CofusionWarning, CubeError
from napari_cofusion.degrade.consistency import (AUTO_MAX_RESIDUAL, edge_weight, observation_srf, project_observations,
                                                 psf_spread)
from napari_cofusion.fusion.classical import glp_hs, glp_hs_reach, local_regression, prepare_glp_hs
from napari_cofusion.fusion.registry import FusionMethod, register

__all__ = ["guided_filter", "plug_and_play", "pnp_gf", "prepare_pnp_gf", "rounds_for", "DEFAULT_ROUNDS", "GUIDE_EPS", "GUIDE_RADIUS", "MOMENTUM",
           "MOMENTUM_X4", "momentum_for"]

#: plug-and-play rounds (projection, then guided filter) by scale (``rounds="auto"``); each round
#: costs about one data-consistency projection. Without momentum, 15 / 40 / 80 rounds over glp-hs
#: with the estimated PSF: ×4 DC Mall +1.24 / +1.38 / +1.38 dB, PaviaU +0.46 / +0.49 / +0.47,
#: Jasper Ridge +1.05 / +1.03 / +1.03; ×8 DC Mall +0.47 / +0.62 / +0.70, PaviaU +0.26 / +0.43 /
#: +0.62, Jasper Ridge +0.56 / +0.68 / +0.73: at ×8 the rounds were still far from their fixed
#: point (PaviaU +0.76 at 160, Salinas-A +0.72 / +0.97 / +1.32 at 40 / 80 / 160). With
#: :data:`MOMENTUM` 0.85, ×8 at 40 / 80 / 160 rounds: PaviaU +0.90 / +1.08 / +1.17, Salinas-A
#: +1.58 / +2.08 / +2.47, Jasper Ridge +0.71 at 40 and 80, DC Mall +0.62 at 40 and 80 (2026-12-02)
#: At ×4, 20 rounds with momentum :data:`MOMENTUM_X4` (2026-12-05, glp-hs choosing the mean of its
#: best three regressions, the PSF estimated from the pair; gains over that glp-hs, plain 15
#: rounds → 0.7 at 15 / 20 rounds): DC Mall +1.00 → +0.85 / +0.82, PaviaU +0.58 → +0.62 / +0.63,
#: Salinas-A +1.31 → +1.85 / +2.16, Jasper Ridge +0.96 → +0.90 / +0.92, oil_painting +0.42 → +0.49
#: / +0.53, paints +1.58 → +2.12 / +2.25: mean +0.97 → +1.14 / +1.22, a lower SAM than glp-hs on
#: every scene. (0.9 swings: DC Mall +0.54 at 15 rounds; 0.5 at 20: oil_painting +0.49, paints +2.07.)
DEFAULT_ROUNDS = {2: 15, 4: 20, 8: 80}
#: heavy-ball momentum of the rounds: each round starts from ``z + m (z − z_previous)`` (clipped to
#: [0, 1]), and at each pixel where a round's change turns back on the one before (negative inner
#: product over the bands) the next round gets no push (adaptive restart, O'Donoghue & Candès
#: 2015, pixel by pixel so that a block decides as the whole frame would). Chosen at ×8, 80
#: rounds, gains over glp-hs: PaviaU plain rounds +0.54 dB, over-relaxation 1.6 / 1.9 +0.69 /
#: +0.75, momentum 0.6 / 0.85 +0.83 / +1.08 (2026-12-02); 0.85 against 0.92 with the restart
#: (a later run; one restart for the whole frame, the pixel-wise one within 0.02 dB of it on the
#: first four): DC Mall +0.62 / +0.63, PaviaU +1.08 / +1.14, Salinas-A +2.08 / +2.49, Jasper
#: Ridge +0.71 / +0.71, oil_painting +0.27 / +0.27 (0.85 from the table), paints +1.07 / +1.07.
#: Used from ×8 up (``momentum="auto"``): at ×4, 15 rounds, 0.92 with the restart gave DC Mall
#: +0.45 (plain rounds +1.10), PaviaU +0.25 (+0.50), Jasper Ridge +0.89 (+1.02), Salinas-A +3.11
#: (+1.46), oil_painting +0.85 (+0.58), paints +2.01 (+1.51): still swinging after 15 rounds on
#: three scenes, so ×4 keeps the plain rounds its table was measured with
MOMENTUM = 0.92
#: the milder momentum of the ×4 rounds (see :data:`DEFAULT_ROUNDS`): 0.92 still swings after 15
#: rounds there, 0.7 gains on four scenes of six and gives up 0.18 dB on DC Mall
MOMENTUM_X4 = 0.7


def momentum_for(scale: int) -> float:
    """The default momentum at this scale: :data:`MOMENTUM` from ×8 up, :data:`MOMENTUM_X4` from
    ×4 up, none below (×2 was not measured with momentum)."""
    return MOMENTUM if int(scale) >= 8 else MOMENTUM_X4 if int(scale) >= 4 else 0.0


def rounds_for(scale: int) -> int:
    """The default number of rounds at this scale (:data:`DEFAULT_ROUNDS`; 80 above ×8)."""
    return DEFAULT_ROUNDS.get(int(scale), 15 if scale < 4 else 80)


#: HR window radius of the guided filter: DC Mall ×4 (4 rounds) radius 1 48.60, 2 48.96; 15
#: rounds radius 2 / 3: DC Mall 49.17 / 48.93, PaviaU 44.27 / 44.31, Salinas-A 55.51 / 55.63,
#: Jasper Ridge 40.85 / 40.75
GUIDE_RADIUS = 2
#: ridge added to the MS covariance of every guided-filter window (cubes in [0, 1]): a guard only.
#: A real ridge was measured and not adopted (2026-12-05, 20 rounds at ×4, 80 at ×8): 1e-6 helped
#: at ×4 with the wald PSF (``benchmarks/pair_probes.py ridge``: PaviaU +0.65 → +0.68 dB over
#: glp-hs, DC Mall +0.83 → +1.12, Salinas-A +2.22 → +2.48, Jasper Ridge +0.92 → +1.03; the CAVE
#: scenes ±0.01; 1e-5 lost on all four), but it lost at ×8 (DC Mall 47.03 → 46.71 dB, PaviaU
#: 43.43 → 41.78, below glp-hs: each round's ridge flattens the windows' fits a little and 80
#: rounds add it up) and with the sharp ``weak`` PSF at ×4 (mean gain over glp-hs +0.71 → +0.58,
#: Salinas-A 53.67 → 53.15 dB), so the choice would have to be fitted to the PSF and the scale
GUIDE_EPS = 1e-8
#: HR rows per guided-filter slab (its float64 normal equations are c·(c + C) values per pixel):
#: small enough that a slab's planes stay in the cache; a CAVE ×8 frame (512², C = 31, c = 3) took
#: 3.5 s with 2²⁴ values a slab and 2.0 s with 2²² (2²¹: 2.3 s), with the same result
_SLAB_ELEMENTS = 2 ** 22


def guided_filter(z: np.ndarray, guide: np.ndarray, radius: int = GUIDE_RADIUS, eps: float = 1e-8) -> np.ndarray:
    """Each band of ``z`` (C, H, W) replaced by its local affine fit on the bands of ``guide``
    (c, H, W) over (2r+1)² windows (coefficients averaged over the windows, as a guided filter
    does). Slabs of rows overlapping by 2r, so the memory stays bounded. Returns float32."""
    C, H, W = z.shape
    c = guide.shape[0]
    rows = max(8 * radius + 1, _SLAB_ELEMENTS // max(W * c * (c + C + 2), 1))
    out = np.empty((C, H, W), dtype=np.float32)
    halo = 2 * radius
    with torch.inference_mode():
        for y0 in range(0, H, rows):
            a0, a1 = max(y0 - halo, 0), min(y0 + rows + halo, H)
            zt = torch.from_numpy(np.ascontiguousarray(z[:, a0:a1], dtype=np.float64))
            gt = torch.from_numpy(np.ascontiguousarray(guide[:, a0:a1], dtype=np.float64))
            a, b = local_regression(zt, gt, radius, eps)
            fit = torch.einsum("kbhw,khw->bhw", a, gt) + b
            out[:, y0:min(y0 + rows, H)] = fit[:, y0 - a0:y0 - a0 + min(rows, H - y0)].float().numpy()
    return out


def prepare_pnp_gf(lr: np.ndarray, msi: np.ndarray, scale: int, kernel: np.ndarray, phase: int,
                   options: dict[str, Any]) -> dict[str, Any]:
    """Scene-wide choices, made once before any block: glp-hs's regression, the SRF fitted to the
    pair and its residual, and whether to fall back to glp-hs (the residual is too large)."""
    opts = prepare_glp_hs(lr, msi, scale, kernel, phase, {"radius": options.get("radius", "auto")})
    R, fit = observation_srf(lr, msi, kernel, scale, phase)
    rounds = options.get("rounds", "auto")
    momentum = options.get("momentum", "auto")
    out = {**options, "rounds": rounds_for(scale) if rounds == "auto" else rounds,
           "momentum": momentum_for(scale) if momentum == "auto" else momentum,
           "radius": opts["radius"], "shrink": opts["shrink"], "scene_fit": opts["scene_fit"],
           **({"bands": opts["bands"]} if "bands" in opts else {}),
           "srf": np.asarray(R).tolist(),
           "fit_residual": float(fit)}
    if not fit <= AUTO_MAX_RESIDUAL:
        out["fallback"] = (f"the PSF and the fitted SRF explain the pair only to a relative residual of {fit:.2g} "
                           f"(> {AUTO_MAX_RESIDUAL:g}): the scene prior would copy that misfit into the result, "
                           "so this is glp-hs")
        warnings.warn(f"pnp-gf: {out['fallback']}", CofusionWarning, stacklevel=2)
    return out


def pnp_gf(lr: np.ndarray, msi: np.ndarray, scale: int, kernel: np.ndarray, phase: int,
           rounds: "int | str" = "auto", guide_radius: int = GUIDE_RADIUS, guide_eps: float = GUIDE_EPS,
           radius: "int | str" = "auto",
           shrink: float = 0.0, srf: Any = None, fallback: str | None = None, momentum: "float | str" = "auto",
           scene_fit: dict[str, Any] | None = None, **_: Any) -> np.ndarray:
    """See the module docstring. ``srf`` (c, C) is fitted to (this block of) the pair when not
    given; ``fallback`` (set by :func:`prepare_pnp_gf`) returns glp-hs. ``rounds="auto"``:
    :func:`rounds_for` the scale; ``momentum="auto"``: :func:`momentum_for` the scale."""
    if rounds == "auto":
        rounds = rounds_for(scale)
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or not 0 <= rounds <= 200:
        raise CubeError(f"pnp-gf: rounds = {rounds!r} must be a whole number from 0 to 200")
    if isinstance(guide_radius, bool) or not isinstance(guide_radius, (int, np.integer)) or not 1 <= guide_radius <= 8:
        raise CubeError(f"pnp-gf: guide_radius = {guide_radius!r} must be a whole number from 1 to 8")
    if isinstance(guide_eps, bool) or not isinstance(guide_eps, (int, float)) or not 0.0 < guide_eps <= 1.0:
        raise CubeError(f"pnp-gf: guide_eps = {guide_eps!r} must be a number above 0 and at most 1")
    if momentum == "auto":
        momentum = momentum_for(scale)
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum < 1.0:
        raise CubeError(f"pnp-gf: momentum = {momentum!r} must be a number from 0 up to (not including) 1")
    z = np.clip(glp_hs(lr, msi, scale, kernel, phase, radius=radius, shrink=shrink, scene_fit=scene_fit), 0.0, 1.0).astype(np.float32)
    if fallback:
        return z
    R = np.asarray(srf, dtype=np.float64) if srf is not None else observation_srf(lr, msi, kernel, scale, phase)[0]
    amp = edge_weight(msi)
    spread = psf_spread(kernel, scale)  # bumps as wide as the PSF: wider ones drift on a sharp PSF

    def project(y: np.ndarray) -> np.ndarray:
        return project_observations(y, lr, msi, kernel, scale, phase, R, amp=amp, spread=spread)

    z = plug_and_play(z, project, lambda y: guided_filter(y, msi, int(guide_radius), float(guide_eps)), int(rounds), float(momentum))
    return project(z)


def plug_and_play(z: np.ndarray, project: Callable[[np.ndarray], np.ndarray],
                  prior: Callable[[np.ndarray], np.ndarray], rounds: int, momentum: float = 0.0,
                  clip: bool = True) -> np.ndarray:
    """``rounds`` rounds of ``z ← prior(project(z))`` from ``z`` (C, H, W), each started from the
    cube pushed on along its last change (heavy-ball ``momentum``, 0 for none) with a pixel-wise
    adaptive restart: where a round's change turns back on the one before (negative inner product
    over the bands), the next round gets no push. ``clip``: keep the cube (and each push) in [0, 1].
    Returns the last prior's output (callers end with their own projection)."""
    box = (lambda a: np.clip(a, 0.0, 1.0)) if clip else (lambda a: a)
    prev = z  # the round before's cube (``z`` itself: no push)
    for _ in range(rounds):
        y = box(z + momentum * (z - prev)) if momentum else z
        z_new = box(prior(project(y)))
        if momentum:
            turned = np.einsum("chw,chw->hw", z_new - z, z - prev) < 0.0
            prev = np.where(turned[None], z_new, z)
        z = z_new
    return z


def _reach(scale: int, kernel: Any) -> int:
    # glp-hs's start, then every round: the projection's LR bumps (a few LR pixels) and the
    # guided filter's two windows; information travels at most this far, in practice much less
    return glp_hs_reach(scale, kernel) + 4 * scale + 4 * GUIDE_RADIUS


register(FusionMethod(
    "pnp-gf", "Pair-only fusion: glp-hs, then rounds of observation projection and an HR guided filter by the HRMSI",
    pnp_gf, options={"rounds": "auto", "guide_radius": GUIDE_RADIUS, "guide_eps": GUIDE_EPS, "radius": "auto",
             "momentum": "auto"},
    reach=_reach, prepare=prepare_pnp_gf,
    # float64 guided-filter slabs are bounded; the cube, the projection's copies and the edge map
    bytes_per_pixel=lambda C, c: 4.0 * C * 8 + 8.0 * c * (c + C),
))
