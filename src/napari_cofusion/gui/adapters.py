"""npe2 adapters: readers, writers and sample data. Thin: every function only calls the core."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

from napari_cofusion.core.cube import Cube, layer_metadata
from napari_cofusion.core.errors import CofusionWarning
from napari_cofusion.core.io import is_cube_path, read_cubes, write_cube
from napari_cofusion.core.io.zarr import is_zarr_path, open_zarr_lazy
from napari_cofusion.gui.layers import show_warning
from napari_cofusion.gui.scene import install_current
from napari_cofusion.samples import cave_pair, houston_pair


__all__ = ["get_reader", "read_layers", "lazy_layer_data", "write_envi", "write_tiff", "write_npy", "cave_pair_sample",
           "houston_pair_sample"]


def get_reader(path: "str | list[str]") -> Callable[..., list] | None:
    """Return a reader when one of the cube formats claims ``path`` (else None, so napari
    tries other plugins)."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(is_cube_path(p) for p in paths):
        return None
    return read_layers


def read_layers(path: "str | list[str]") -> list[tuple]:
    """Every cube in the path(s) as image layers with wavelengths in the metadata (rgb=False).
    What the readers changed on the way in (values clipped, with the count) is shown as a
    notification, and kept in the layer's metadata (``clipped``). The first read also makes the
    plugin napari's reader on drag-and-drop for *.hdr, *.tif, *.tiff, *.mat, *.npy and *.npz where
    the user has no preference yet (:func:`napari_cofusion.gui.scene.prefer_plugin_reader`), and
    the current viewer places the new layers in one world frame (:mod:`napari_cofusion.gui.scene`)."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    install_current()  # the current viewer places the new layers in one frame (gui.scene)
    layers = []
    for p in paths:
        if is_zarr_path(p):  # a store from a large fusion: a lazy (dask) layer, read as it is shown
            layers.append(lazy_layer_data(p))
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CofusionWarning)
            cubes = read_cubes(p)
        for w in caught:
            if issubclass(w.category, CofusionWarning):
                show_warning(str(w.message))
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        layers += [cube.to_layer_data() for cube in cubes]
    return layers


def lazy_layer_data(path: "str | Path") -> tuple:
    """A napari LayerDataTuple over a zarr store whose data is a dask array: napari reads the
    chunks of the band it shows, never the whole cube."""
    data, attrs = open_zarr_lazy(path)
    md = layer_metadata(attrs.get("wavelengths_nm"), attrs.get("norm_scale", 1.0), str(path),
                        {"lazy": True, **(attrs.get("meta") or {})})
    return data, {"name": attrs.get("name") or Path(path).stem, "rgb": False, "metadata": md}, "image"


def _write(path: str, data: Any, meta: dict, suffix: str) -> list[str]:
    p = Path(path)
    if p.suffix.lower() not in suffix.split("|"):
        p = p.with_suffix(suffix.split("|")[0])
    cube = Cube.from_layer_data(data, meta.get("metadata"), name=meta.get("name") or p.stem)
    return write_cube(cube, p, overwrite=False)


def write_envi(path: str, data: Any, meta: dict) -> list[str]:
    return _write(path, data, meta, ".hdr")


def write_tiff(path: str, data: Any, meta: dict) -> list[str]:
    return _write(path, data, meta, ".tif|.tiff")


def write_npy(path: str, data: Any, meta: dict) -> list[str]:
    return _write(path, data, meta, ".npy")


def cave_pair_sample() -> list[tuple]:
    lr, msi, ref = cave_pair("cave-x4")
    install_current()
    return [ref.to_layer_data(), msi.to_layer_data(), lr.to_layer_data()]


def houston_pair_sample() -> list[tuple]:
    hs, rgb = houston_pair()
    install_current()
    return [rgb.to_layer_data(), hs.to_layer_data()]
