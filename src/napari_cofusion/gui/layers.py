"""Helpers shared by the dock widgets: finding cube layers, turning layers into Cubes and back."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["cube_layers", "layer_cube", "add_cube", "show_error", "show_warning", "show_info", "layer_wavelengths"]


def cube_layers(viewer: "napari.Viewer") -> list:
    """Image layers holding a (C, H, W) cube (not RGB, 3-D data)."""
    from napari.layers import Image

    return [l for l in viewer.layers if isinstance(l, Image) and not l.rgb and l.data.ndim == 3]


def layer_cube(layer) -> Cube:
    """The layer's data as a Cube (wavelengths from its metadata)."""
    try:
        return Cube.from_layer_data(np.asarray(layer.data), dict(layer.metadata), name=layer.name)
    except CubeError as exc:
        raise CubeError(f"layer '{layer.name}': {exc}") from None


def layer_wavelengths(layer) -> np.ndarray | None:
    wl = layer.metadata.get("wavelengths")
    if wl is None or len(wl) != layer.data.shape[0]:
        return None
    return np.asarray(wl, dtype=float)


def add_cube(viewer: "napari.Viewer", cube: Cube, **kwargs):
    """Add (or replace, by name) a cube layer with rgb=False and the cube's metadata. A new layer
    gets its place in the world frame and the display defaults (1–99 % contrast, so a fused
    result in [0, 1] does not open black) from :mod:`napari_cofusion.gui.scene` as it is inserted;
    a replaced layer's contrast follows its new data, and its place its new recipe."""
    from napari_cofusion.core.display import percentile_limits
    from napari_cofusion.gui.scene import install

    scene = install(viewer)  # placed in the viewer's world frame, with the display defaults
    data, kw, _ = cube.to_layer_data()
    kw.update(kwargs)
    name = kw.get("name", cube.name)
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data = data
        layer.metadata.update(kw.get("metadata", {}))
        layer.contrast_limits = kw.get("contrast_limits") or percentile_limits(data)
        scene.arrange(fit=False)  # the new recipe may put the samples elsewhere (another phase or PSF)
        return layer
    return viewer.add_image(data, **kw)


def show_error(message: str) -> None:
    from napari.utils.notifications import show_error as _show

    _show(message)


def show_warning(message: str) -> None:
    from napari.utils.notifications import show_warning as _show

    _show(message)


def show_info(message: str) -> None:
    from napari.utils.notifications import show_info as _show

    _show(message)
