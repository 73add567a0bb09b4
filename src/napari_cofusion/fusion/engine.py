"""``fuse``: run a registered method on a pair, with the pair's degradations and the optional
data-consistency step. The one entry point Python, the CLI and the GUI use (through
:mod:`napari_cofusion.api`, which makes sure every method is registered)."""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError
from napari_cofusion.degrade.consistency import enforce
from napari_cofusion.degrade.simulate import PSF
from napari_cofusion.fusion.pair import check_pair, check_recipe
from napari_cofusion.fusion.registry import FusionMethod, get_method, iter_methods

__all__ = ["fuse", "FusionResult", "accepted_options", "check_options"]


_CALL = ("lr", "msi", "scale", "kernel", "phase")


def accepted_options(m: FusionMethod) -> set[str]:
    """The keyword options a method's ``run`` takes (besides the pair, scale, kernel and phase)."""
    params = inspect.signature(m.run).parameters.values()
    return {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in _CALL}


def check_options(m: FusionMethod, options: dict[str, Any]) -> None:
    """Refuse options the method would ignore (a typo, or ``weights`` for a classical method)."""
    unknown = sorted(set(options) - accepted_options(m) - {"progress", "lr_cube", "msi_cube"})
    if unknown:
        hint = ""
        if "weights" in unknown or "model" in unknown:
            learned = [x.name for x in iter_methods() if x.needs_weights]
            hint = f"; weights are for the learned methods ({', '.join(learned) or 'none registered'})"
        takes = sorted(accepted_options(m) - {"progress", "lr_cube", "msi_cube"})
        raise CubeError(f"{m.name} does not take {', '.join(unknown)} (it takes: {', '.join(takes) or 'no options'})"
                        + hint)


@dataclass
class FusionResult:
    cube: Cube
    method: str
    scale: int
    seconds: float = 0.0
    consistency: dict[str, Any] | None = None  # the data-consistency step's report, when it ran


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
    observations (:mod:`napari_cofusion.degrade.consistency`); its report is ``FusionResult.consistency``
    and the cube's ``meta["consistency"]``.
    """
    m = get_method(method)
    scale = check_pair(lr, msi)
    check_options(m, options)
    for what, cube in (("LRHSI", lr), ("HRMSI", msi)):
        lo, hi = float(cube.data.min()), float(cube.data.max())
        if lo == hi:
            raise CubeError(f"the {what} '{cube.name}' is constant (every value {lo:g}): there is nothing to fuse")
    recipe = check_recipe(lr.meta.get("recipe"), lr, msi, scale)
    if m.defaults is not None and (psf is None or phase is None) and not recipe:
        d = m.defaults(lr, msi, scale, options)
        psf = d.get("psf") if psf is None else psf
        phase = d.get("phase") if phase is None else phase
    if psf is None:
        psf = recipe.get("psf", "weak")
    if phase is None:
        phase = recipe.get("phase")
    ph = scale // 2 if phase is None else phase
    if isinstance(ph, bool) or not isinstance(ph, (int, np.integer)) or not 0 <= ph < scale:
        raise CubeError(f"decimation phase {ph!r} must be a whole number in [0, {scale}) at ×{scale}")
    kernel = PSF.parse(psf).kernel(scale)
    t0 = time.perf_counter()
    takes = accepted_options(m)
    progress = options.pop("progress", None) if "progress" not in takes else options.get("progress")
    extra = {k: v for k, v in (("lr_cube", lr), ("msi_cube", msi)) if k in takes}
    out = m.run(lr.data, msi.data, scale=scale, kernel=kernel, phase=int(ph), **extra, **options)
    if progress is not None and "progress" not in takes:
        progress(1, 1)
    mode = m.consistency if consistency is None else consistency
    report = None
    if mode != "off" or consistency is not None:
        out, rep = enforce(np.clip(out, 0.0, 1.0), lr.data, msi.data, kernel, scale, ph, mode)
        report = rep.to_json()
    secs = time.perf_counter() - t0
    if clip:
        out = np.clip(out, 0.0, 1.0)
    used = m.provenance(lr, msi, scale, options) if m.provenance is not None else {}
    cube = Cube(
        np.ascontiguousarray(out, dtype=np.float32), wavelengths=lr.wavelengths, norm_scale=lr.norm_scale,
        name=f"{method} fused", source=f"{method}({lr.name}, {msi.name})",
        meta={"method": method, "scale": scale, "psf": PSF.parse(psf).to_json(), **used,
              **({"consistency": report} if report else {})},
    )
    return FusionResult(cube=cube, method=method, scale=scale, seconds=secs, consistency=report)
