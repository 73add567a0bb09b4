"""Where a cube's pixels lie in the scene: one world frame for an LRHSI and the HR images of its pair.

No Qt or napari dependency: the napari layer code (:mod:`napari_cofusion.gui.scene`) only calls these.

The world frame is the HR pixel grid: HR pixel ``j`` (row or column) is centred at world ``j``, i.e.
HR layers (the HRMSI, references, fused results) keep scale 1 and translate 0. napari puts the
centre of data pixel ``i`` of a layer at world ``scale·i + translate`` (pixel centres at whole data
coordinates; the pixel covers ``i ± 1/2`` in data units).

The degradation (:func:`napari_cofusion.core.ops.degrade`) blurs the HR image with the PSF and keeps
LR sample ``i`` at HR pixel ``s·i + p`` (``p`` the decimation phase): the PSF that made the sample is
centred on that HR pixel. So an LR layer gets scale ``s`` and translate ``p`` (not ``(s - 1)/2``, the
centre of the block ``s·i … s·i + s - 1``, which is half an HR pixel off for the protocol's phase
``s // 2`` at even ``s``): LR pixel ``i`` is drawn over the HR pixels ``s·i + p - s/2 … s·i + p + s/2``,
centred on the pixel it observed, and napari's ``world_to_data`` maps HR pixel ``s·i + p`` to LR
pixel ``i`` exactly.

The phase: the recipe's ``phase`` (a simulated pair records it in the layer metadata
``["recipe"]``), else the PSF / SRF estimate's, else the protocol's ``s // 2``. A PSF whose samples
lie between HR pixels (the ``dhif`` protocols' s×s kernel, kept at ``s//2 - 1`` and centred at
``s·i + (s - 1)/2``) adds its half pixel to the translate (:func:`sample_centre`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

__all__ = ["lr_transform", "sample_phase", "sample_centre", "integer_scale", "scene_transforms"]


def integer_scale(hr_shape: Sequence[int], lr_shape: Sequence[int]) -> int | None:
    """The whole number ``s`` with ``H = s·h`` and ``W = s·w`` ((rows, columns) last), 1 for the same
    grid, None when the two grids are not related by one integer scale."""
    H, W = (int(v) for v in hr_shape[-2:])
    h, w = (int(v) for v in lr_shape[-2:])
    if h <= 0 or w <= 0 or H % h or W % w or H // h != W // w:
        return None
    return H // h


def _chosen_phase(scale: int, recipe: Mapping[str, Any] | None, estimate: Any) -> tuple[int, Any]:
    s = int(scale)
    for source in (recipe, estimate):
        if source is None:
            continue
        get = source.get if isinstance(source, Mapping) else (lambda k, _s=source: getattr(_s, k, None))
        phase, at = get("phase"), get("scale")
        if phase is None or isinstance(phase, bool):
            continue
        if at is not None and int(at) != s:
            continue
        try:
            p = int(phase)
        except (TypeError, ValueError):
            continue
        if 0 <= p < s:
            return p, source
    return s // 2, None


def sample_phase(scale: int, recipe: Mapping[str, Any] | None = None, estimate: Any = None) -> int:
    """The decimation phase of an LR image at ``scale``: the ``recipe``'s phase (a dict, e.g. the
    layer metadata's ``"recipe"``) when it is for this scale, else the ``estimate``'s (an object
    with ``scale`` and ``phase``, or a dict), else ``scale // 2``; always in ``[0, scale)``."""
    return _chosen_phase(scale, recipe, estimate)[0]


def sample_centre(scale: int, recipe: Mapping[str, Any] | None = None, estimate: Any = None,
                  kernel_of: "Callable[[Mapping[str, Any]], Any] | None" = None) -> float:
    """Where LR sample 0 lies on the HR grid (rows; the protocols' PSFs are square): the
    :func:`sample_phase`, plus the half pixel of a PSF whose samples lie between HR pixels
    (:func:`napari_cofusion.core.ops.sample_offset`; the ``dhif`` protocols: ``s//2 - 1 + 1/2``).
    The PSF is the estimate's ``kernel`` when the phase came from the estimate, ``kernel_of(recipe)``
    when it came from the recipe (the caller knows how to build a recipe's PSF)."""
    from napari_cofusion.core.ops import sample_offset

    phase, source = _chosen_phase(scale, recipe, estimate)
    kernel = None
    if source is not None and source is recipe:
        kernel = kernel_of(recipe) if kernel_of is not None else None
    elif source is not None:  # the estimate
        kernel = estimate.get("kernel") if isinstance(estimate, Mapping) else getattr(estimate, "kernel", None)
    return float(phase) + (sample_offset(kernel)[0] if kernel is not None else 0.0)


def lr_transform(scale: int, phase: "float | None" = None) -> tuple[tuple[float, float], tuple[float, float]]:
    """(scale, translate) of the (row, column) axes that put LR sample ``i`` over HR coordinate
    ``scale·i + phase`` (see the module docstring): ``((s, s), (p, p))``; ``phase`` None is
    ``s // 2``; a fraction (:func:`sample_centre`) for samples between HR pixels."""
    s = int(scale)
    if s < 1:
        raise ValueError(f"scale must be a positive whole number, got {scale!r}")
    p = s // 2 if phase is None else float(phase)
    return (float(s), float(s)), (float(p), float(p))


def scene_transforms(shapes: Sequence[Sequence[int]], phases: Sequence[int | None] | None = None
                     ) -> list[tuple[tuple[float, float], tuple[float, float]] | None]:
    """For cubes of the given shapes ((rows, columns) last), the (scale, translate) of their
    (row, column) axes in one frame: the largest grid (by pixel count) is the HR frame (scale 1,
    translate 0), a grid ``s`` times smaller gets :func:`lr_transform` with its phase
    (``phases[k]``, None for ``s // 2``); None for a grid not related to the HR one by a whole
    number (left where it is)."""
    if not shapes:
        return []
    phases = list(phases) if phases is not None else [None] * len(shapes)
    hr = max(shapes, key=lambda sh: int(sh[-2]) * int(sh[-1]))
    out: list = []
    for shape, phase in zip(shapes, phases):
        s = integer_scale(hr, shape)
        out.append(None if s is None else lr_transform(s, phase if s > 1 else 0))
    return out
