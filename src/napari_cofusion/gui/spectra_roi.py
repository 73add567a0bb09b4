"""ROI masks on the high-resolution grid from napari Shapes and Labels layers (thin: the
rasterising and the statistics are :mod:`napari_cofusion.core.spectra`).

Shape vertices go from the Shapes layer's data coordinates to world coordinates
(``data_to_world``) and into the HR layer's data coordinates (``world_to_data``), so layers with
any scale or translate agree. Rectangles and polygons are used as drawn, ellipses as a
64-vertex polygon; lines and paths have no inside and are skipped. A Labels layer gives one ROI
per label value: each HR pixel takes the label under its centre (a 3-D Labels layer is
collapsed over its first axis, the largest label winning).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_cofusion.core import spectra as core

__all__ = ["roi_layers", "shapes_masks", "labels_masks", "layer_masks"]

#: At most this many label values of one Labels layer become ROIs (the first ones, in order).
MAX_LABELS = 12


def roi_layers(viewer) -> list:
    """The Shapes and Labels layers of the viewer (where ROIs can be drawn or painted)."""
    from napari.layers import Labels, Shapes

    return [l for l in viewer.layers if isinstance(l, (Shapes, Labels))]


def _to_hr(layer, hr_layer, point: Any) -> np.ndarray:
    """A point of ``layer``'s data coordinates in HR-layer data coordinates (row, col)."""
    world = np.asarray(layer.data_to_world(np.asarray(point, float)), float)
    n = len(hr_layer.data.shape)
    if world.size < n:
        world = np.concatenate([np.zeros(n - world.size), world])
    return np.asarray(hr_layer.world_to_data(world[-n:]), float)[-2:]


def shapes_masks(shapes, hr_layer, grid: tuple[int, int]) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """(name, HR mask) per closed shape, and notes on the shapes skipped."""
    out, notes = [], []
    for i, (verts, kind) in enumerate(zip(shapes.data, shapes.shape_type)):
        name = f"{shapes.name} #{i + 1}"
        if kind not in ("rectangle", "polygon", "ellipse"):
            notes.append(f"{name}: a {kind} has no inside; skipped")
            continue
        hr = np.stack([_to_hr(shapes, hr_layer, v) for v in np.asarray(verts, float)])
        poly = core.ellipse_polygon(hr) if kind == "ellipse" else hr
        mask = core.polygon_mask(poly, grid)
        if not mask.any():
            notes.append(f"{name}: holds no pixel centre of the image; skipped")
            continue
        out.append((name, mask))
    return out, notes


def labels_masks(labels, hr_layer, grid: tuple[int, int]) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """(name, HR mask) per label value painted in a Labels layer."""
    data = np.asarray(labels.data)
    if data.ndim > 2:
        data = data.reshape((-1,) + data.shape[-2:]).max(axis=0)
    H, W = grid
    # HR pixel centres → world → the labels layer's pixels (axis-aligned: one map per axis)
    (fr, fc), (orow, ocol) = core.grid_affine(
        grid, data.shape, hr_layer.scale, hr_layer.translate, labels.scale, labels.translate)
    rows = np.floor(np.arange(H) * fr + orow + 0.5).astype(int)
    cols = np.floor(np.arange(W) * fc + ocol + 0.5).astype(int)
    okr, okc = (rows >= 0) & (rows < data.shape[0]), (cols >= 0) & (cols < data.shape[1])
    on_hr = np.zeros((H, W), data.dtype)
    on_hr[np.ix_(okr, okc)] = data[np.ix_(rows[okr], cols[okc])]
    values = [int(v) for v in np.unique(on_hr) if v != 0]
    notes = [] if values else [f"{labels.name}: nothing painted over the image"]
    if len(values) > MAX_LABELS:
        notes.append(f"{labels.name}: {len(values)} labels; the first {MAX_LABELS} are used")
        values = values[:MAX_LABELS]
    return [(f"{labels.name} label {v}", on_hr == v) for v in values], notes


def layer_masks(layer, hr_layer, grid: tuple[int, int]) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    from napari.layers import Labels

    if isinstance(layer, Labels):
        return labels_masks(layer, hr_layer, grid)
    return shapes_masks(layer, hr_layer, grid)
