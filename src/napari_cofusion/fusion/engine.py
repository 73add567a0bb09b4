"""``fuse``: run a registered method on a pair, with the pair's degradations and the optional
data-consistency step. The one entry point Python, the CLI and the GUI use (through
:mod:`napari_cofusion.api`, which makes sure every method is registered)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_cofusion.core.cube import Cube
from napari_cofusion.degrade.consistency import enforce
from napari_cofusion.degrade.simulate import PSF
from napari_cofusion.fusion.pair import check_pair
from napari_cofusion.fusion.registry import get_method

__all__ = ["fuse", "FusionResult"]


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
