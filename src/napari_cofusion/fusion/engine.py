"""``fuse``: run a registered method on a pair, with the pair's degradations and the optional
data-consistency step. The one entry point Python, the CLI and the GUI use (through
:mod:`napari_cofusion.api`, which makes sure every method is registered)."""

from __future__ import annotations

import inspect
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CofusionWarning, CubeError
from napari_cofusion.core.io.common import json_safe
from napari_cofusion.degrade.consistency import (
    ConsistencyReport, decide, edge_weight, mismatch_terms, project_observations, ratios,
)
from napari_cofusion.degrade.simulate import PSF, default_phase
from napari_cofusion.fusion.blocks import ArraySink, Block, block_side, memory_budget, plan_blocks, run_blocks
from napari_cofusion.fusion.pair import check_pair, check_recipe
from napari_cofusion.fusion.registry import FusionMethod, get_method, iter_methods

__all__ = ["fuse", "plan_fusion", "FusionPlan", "FusionResult", "finish", "accepted_options", "check_options"]


_CALL = ("lr", "msi", "scale", "kernel", "phase")


def accepted_options(m: FusionMethod) -> set[str]:
    """The keyword options a method's ``run`` takes (besides the pair, scale, kernel and phase)."""
    params = inspect.signature(m.run).parameters.values()
    return {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in _CALL
            and not p.name.startswith("_")}  # _model: what prepare hands run, not an option


def check_options(m: FusionMethod, options: dict[str, Any]) -> None:
    """Refuse options the method would ignore (a typo, or ``weights`` for a classical method)."""
    unknown = sorted(set(options) - accepted_options(m))
    if unknown:
        hint = ""
        if "weights" in unknown or "model" in unknown:
            learned = [x.name for x in iter_methods() if x.needs_weights]
            hint = f"; weights are for the learned methods ({', '.join(learned) or 'none registered'})"
        takes = sorted(accepted_options(m))
        raise CubeError(f"{m.name} does not take {', '.join(unknown)} (it takes: {', '.join(takes) or 'no options'})"
                        + hint)


@dataclass
class FusionResult:
    cube: Cube | None  # None when the result went to a file (``fuse(..., out=PATH)``)
    method: str
    scale: int
    seconds: float = 0.0
    consistency: dict[str, Any] | None = None  # the data-consistency step's report, when it ran
    blocks: int = 1  # how many blocks the scene was fused in (1: whole frame)
    paths: list[str] | None = None  # the files written, with ``out``
    meta: dict[str, Any] | None = None  # what the cube's meta holds (method, psf, weights, consistency, ...)


#: what a method needs per HR pixel of a block when it does not say (float32 input, output, work)
_DEFAULT_BYTES_PER_PIXEL = lambda C, c: 4.0 * C * 8  # noqa: E731


#: ``psf`` values that make :func:`fuse` estimate the PSF and phase from the pair
ESTIMATE_PSF = ("auto", "estimate")


def estimate_psf(lr: Cube, msi: Cube, phase: int | None = None) -> tuple[dict[str, Any], int, dict[str, Any]]:
    """The PSF (JSON) and decimation phase estimated from the pair (the phase too unless given),
    and what to record and tell the user: ``{"psf", "phase", "sigma", "fit_residual", "doubts"}``
    (doubts: sentences with the numbers when the estimate is poor,
    :func:`~napari_cofusion.degrade.estimate.estimate_doubts`)."""
    from napari_cofusion.degrade.estimate import estimate_degradation, estimate_doubts

    deg = estimate_degradation(lr, msi, phase=phase)
    info = {"psf": deg.psf, "phase": int(deg.phase), "sigma": deg.sigma, "fit_residual": float(deg.residual),
            "doubts": estimate_doubts(deg)}
    return deg.psf, int(deg.phase), info


@dataclass
class FusionPlan:
    """Everything :func:`fuse` decides for a pair before it fuses a block: the method and its
    (prepared) options, the PSF kernel and phase, the blocks, and the data-consistency step's
    scene-wide part (the SRF ``R`` or None, the edge map ``amp``). :meth:`block` fuses one block;
    the serial loop of :func:`fuse` and the dask graph of :mod:`napari_cofusion.fusion.scaleout`
    both call it."""

    method: FusionMethod
    scale: int
    kernel: np.ndarray
    phase: int
    psf: PSF
    mode: str
    clip: bool
    explicit_consistency: bool
    options: dict[str, Any]
    blocks: list[Block]
    R: np.ndarray | None
    report: ConsistencyReport
    amp: np.ndarray | None
    estimate: dict[str, Any] | None

    def block(self, b: Block, lr_b: np.ndarray, ms_b: np.ndarray, amp_b: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """Fuse one block's extended area: (its interior (C, y1−y0, x1−x0) float32, the consistency
        step's mismatch terms before/after (2, 4), zeros without the step). ``amp_b``: the edge
        map over the extended area (default: cut from the plan's)."""
        s, ph, kernel, R = self.scale, self.phase, self.kernel, self.R
        z = self.method.run(lr_b, ms_b, scale=s, kernel=kernel, phase=ph, **self.options)
        if self.mode != "off" or self.explicit_consistency:
            z = np.clip(z, 0.0, 1.0)
        terms = np.zeros((2, 4))
        (iy, ix) = b.interior_in_extended()
        if R is not None:
            if amp_b is None:
                hy, hx = b.hr_slices()
                amp_b = self.amp[hy, hx]
            ly, lx = slice(iy.start // s, iy.stop // s), slice(ix.start // s, ix.stop // s)
            terms[0] = mismatch_terms(z, lr_b, ms_b, kernel, s, ph, R, (ly, lx), (iy, ix))
            z = project_observations(z, lr_b, ms_b, kernel, s, ph, R, amp=amp_b)
            terms[1] = mismatch_terms(z, lr_b, ms_b, kernel, s, ph, R, (ly, lx), (iy, ix))
        z = np.clip(z, 0.0, 1.0) if self.clip else z
        return np.asarray(z[:, iy, ix], dtype=np.float32), terms

    def consistency(self, terms: np.ndarray) -> dict[str, Any] | None:
        """The step's report with the mismatches summed over the blocks (None when it was not asked for)."""
        report = self.report
        if self.R is not None:
            (b0, b1), (a0, a1) = ratios(terms[0]), ratios(terms[1])
            report = ConsistencyReport(self.mode, True, report.fit_residual, "projected", b0, a0, b1, a1)
        return report.to_json() if (self.mode != "off" or self.explicit_consistency) else None

    def meta(self, lr: Cube, msi: Cube, rep: dict[str, Any] | None) -> dict[str, Any]:
        """What the result records: method, scale, PSF, weights, estimate, options, consistency, blocks."""
        m = self.method
        used = m.provenance(lr, msi, self.scale, self.options) if m.provenance is not None else {}
        return {"method": m.name, "scale": self.scale, "psf": self.psf.to_json(), **used,
                **({"estimate": self.estimate} if self.estimate is not None else {}),
                **({"options": json_safe({k: v for k, v in self.options.items() if not k.startswith("_")})}
                   if m.prepare is not None else {}),
                **({"consistency": rep} if rep else {}),
                **({"blocks": len(self.blocks)} if len(self.blocks) > 1 else {})}


def _warn_if_trained_for_another_psf(m: FusionMethod, lr: Cube, msi: Cube, scale: int, options: dict[str, Any],
                                     psf: PSF, phase: int) -> None:
    """Weights trained for one PSF lose several dB on another (a half pixel of phase already
    costs): say so, with both, before the run (the result is still made: it may be what the user
    wants to compare)."""
    d = m.defaults(lr, msi, scale, options)
    t_psf, t_phase = d.get("psf"), d.get("phase")
    if not t_psf:
        return
    t_obj = PSF.parse(t_psf)
    t_phase = default_phase(t_obj, scale) if t_phase is None else int(t_phase)
    same = t_obj.to_json() == psf.to_json() or (t_obj.kind == psf.kind and t_obj.kind in ("weak", "wald", "dhif"))
    if not same and t_obj.kind == psf.kind == "gaussian" and bool(t_obj.half) == bool(psf.half):
        same = abs(float(t_obj.sigma or 0) - float(psf.sigma or 0)) <= 0.05 * max(float(psf.sigma or 0), 1e-6)
    if not same and "array" in (t_obj.kind, psf.kind):  # an estimate's kernel beside the one it came from
        a, b = t_obj.kernel(scale), psf.kernel(scale)
        same = a.shape == b.shape and float(np.abs(a - b).sum()) < 0.05
    if same and t_phase == phase:
        return
    warnings.warn(f"{m.name}: the weights were trained for the PSF {t_obj.describe()} at phase {t_phase}, and this "
                  f"pair's is {psf.describe()} at phase {phase}: expect a lower quality than their card's (weights "
                  "for this PSF: train them with --protocol, or fine-tune on the scene)", CofusionWarning, stacklevel=3)


def plan_fusion(
    lr: Cube,
    msi: Cube,
    method: str = "glp-hs",
    psf: "str | PSF | dict | None" = None,
    phase: int | None = None,
    clip: bool = True,
    consistency: str | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    **options: Any,
) -> FusionPlan:
    """Check the pair and the options and make the scene-wide choices (:func:`fuse`'s arguments)."""
    m = get_method(method)
    scale = check_pair(lr, msi)
    check_options(m, options)
    for what, cube in (("LRHSI", lr), ("HRMSI", msi)):
        lo, hi = float(cube.data.min()), float(cube.data.max())
        if lo == hi:
            raise CubeError(f"the {what} '{cube.name}' is constant (every value {lo:g}): there is nothing to fuse")
    recipe = check_recipe(lr.meta.get("recipe"), lr, msi, scale)
    estimate = None
    if isinstance(psf, str) and psf.lower() in ESTIMATE_PSF:
        psf, phase, estimate = estimate_psf(lr, msi, phase)
    if m.defaults is not None and (psf is None or phase is None) and not recipe:
        d = m.defaults(lr, msi, scale, options)
        psf = d.get("psf") if psf is None else psf
        phase = d.get("phase") if phase is None else phase
    if psf is None:
        psf = recipe.get("psf", "weak")
    if phase is None:
        phase = recipe.get("phase")
    psf_obj = PSF.parse(psf)
    ph = default_phase(psf_obj, scale) if phase is None else phase
    if isinstance(ph, bool) or not isinstance(ph, (int, np.integer)) or not 0 <= ph < scale:
        raise CubeError(f"decimation phase {ph!r} must be a whole number in [0, {scale}) at ×{scale}")
    ph = int(ph)
    kernel = psf_obj.kernel(scale)
    if m.choose_weights is not None and options.get("model") is None and options.get("weights") is None:
        options = {**options, "weights": m.choose_weights(lr, msi, scale, kernel, ph)}
    if m.defaults is not None and options.get("model") is None:
        _warn_if_trained_for_another_psf(m, lr, msi, scale, options, psf_obj, ph)
    mode = m.consistency if consistency is None else consistency
    if m.prepare is not None:
        options = m.prepare(lr.data, msi.data, scale, kernel, ph, dict(options))
    blocks = _plan(m, lr, msi, scale, kernel, tile, overlap, options)
    R, report = decide(lr.data, msi.data, kernel, scale, ph, mode)
    amp = edge_weight(msi.data) if R is not None else None
    return FusionPlan(m, scale, kernel, ph, psf_obj, mode, clip, consistency is not None, dict(options), blocks, R,
                      report, amp, estimate)


def fuse(
    lr: Cube,
    msi: Cube,
    method: str = "glp-hs",
    psf: "str | PSF | dict | None" = None,
    phase: int | None = None,
    clip: bool = True,
    consistency: str | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    progress: Callable[[int, int], Any] | None = None,
    out: "str | os.PathLike | None" = None,
    overwrite: bool = False,
    **options: Any,
) -> FusionResult:
    """Fuse a pair with a registered method. The scale is inferred from the sizes and checked.

    ``psf`` is the blur that relates the LRHSI to the HR scene (default: the ``recipe`` in the
    LRHSI's metadata when it was simulated, else ``weak``; ``"auto"``: estimated from the pair
    with the phase, :func:`estimate_psf`, recorded in ``meta["estimate"]``); ``phase`` the
    decimation phase (default the recipe's, else the PSF's: s//2 - 1 for dhif, s//2 otherwise). Learned methods take ``weights=``.
    ``consistency`` ("auto", "on", "off"; default: the method's) projects the result onto the
    observations (:mod:`napari_cofusion.degrade.consistency`); its report is ``FusionResult.consistency``
    and the cube's ``meta["consistency"]``.

    Memory: the scene is fused whole when the method's working memory for it fits the budget
    (:func:`~napari_cofusion.fusion.blocks.memory_budget`), else in blocks of side ``tile`` (default:
    from the budget and the band counts) with a margin of ``overlap // 2`` HR pixels at least the
    method's reach (:mod:`napari_cofusion.fusion.blocks`); the consistency step runs per block too.
    ``out`` (an ENVI ``.hdr`` path) writes the result block by block to that file instead of
    returning it in memory (``FusionResult.cube`` is then None). ``progress(done, total)`` is
    called after each block. (Blocks on dask workers, and many pairs:
    :mod:`napari_cofusion.fusion.scaleout`.)
    """
    t0 = time.perf_counter()
    plan = plan_fusion(lr, msi, method, psf, phase, clip, consistency, tile, overlap, **options)
    sink = _sink(out, lr.bands, msi.spatial_shape, overwrite)
    terms = np.zeros((2, 4))

    def step(b: Block, lr_b: np.ndarray, ms_b: np.ndarray) -> np.ndarray:
        z, t = plan.block(b, lr_b, ms_b)
        terms[:] += t
        return z

    try:
        run_blocks(step, lr.data, msi.data, plan.scale, plan.blocks, sink, progress, interior=True)
    except BaseException:
        if hasattr(sink, "abort"):
            sink.abort()
        raise
    secs = time.perf_counter() - t0
    rep = plan.consistency(terms)
    return finish(plan, lr, msi, sink, secs, rep, out)


def finish(plan: FusionPlan, lr: Cube, msi: Cube, sink: Any, secs: float, rep: dict[str, Any] | None,
           out: "str | os.PathLike | None") -> FusionResult:
    """The :class:`FusionResult` of a plan whose blocks went to ``sink`` (closed here when a file)."""
    method = plan.method.name
    meta = plan.meta(lr, msi, rep)
    name, source = f"{method} fused", f"{method}({lr.name}, {msi.name})"
    n = len(plan.blocks)
    if out is not None:
        paths = sink.close(name=name, wavelengths=lr.wavelengths, norm_scale=lr.norm_scale, meta=meta)
        return FusionResult(None, method, plan.scale, secs, rep, n, paths, meta)
    cube = Cube(sink.data, wavelengths=lr.wavelengths, norm_scale=lr.norm_scale, name=name, source=source, meta=meta)
    return FusionResult(cube=cube, method=method, scale=plan.scale, seconds=secs, consistency=rep, blocks=n,
                        meta=cube.meta)


def _plan(m: FusionMethod, lr: Cube, msi: Cube, scale: int, kernel: np.ndarray, tile: int | None,
          overlap: int | None, options: dict[str, Any] | None = None) -> list[Block]:
    """Whole frame when it fits the memory budget (and no ``tile`` is asked), else blocks."""
    H, W = msi.spatial_shape
    reach = m.reach(scale, kernel) if m.reach is not None else 8 * scale
    margin = max(reach, (overlap or 0) // 2)
    bpp = (m.bytes_per_pixel or _DEFAULT_BYTES_PER_PIXEL)(lr.bands, msi.bands)
    align = m.align(scale, options or {}) if m.align is not None else None
    if tile is None:
        if H * W * bpp <= memory_budget():
            return [Block(0, H, 0, W, 0, H, 0, W)]
        tile = block_side(bpp, scale, margin, align=align)
    return plan_blocks(H, W, tile, margin, scale, align=align)


def _sink(out: "str | os.PathLike | None", bands: int, hw: tuple[int, int], overwrite: bool, chunk: int = 256):
    """Where the blocks go: memory, an ENVI file (``.hdr``) or a zarr store (``.zarr``, chunks of
    one band × ``chunk``² pixels)."""
    if out is None:
        return ArraySink(bands, *hw)
    from napari_cofusion.core.io.zarr import ZARR_SUFFIX, ZarrSink

    if str(out).lower().rstrip("/\\").endswith(ZARR_SUFFIX):
        return ZarrSink(out, bands, *hw, chunk=chunk, overwrite=overwrite)
    from napari_cofusion.core.io.envi import EnviSink

    return EnviSink(out, bands, *hw, overwrite=overwrite)
