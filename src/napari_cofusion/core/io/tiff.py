"""TIFF and multi-page TIFF cubes (tifffile); the project writes band-first float32 with the
wavelengths in the JSON description."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError
from napari_cofusion.core.io.common import check_file, make_cube, new_files, to_band_first

__all__ = ["read_tiff", "write_tiff", "TIFF_EXTS"]

TIFF_EXTS = (".tif", ".tiff")


def read_tiff(path: str | os.PathLike, band_axis: int | None = None, norm: str | float = "auto") -> Cube:
    """A TIFF or multi-page TIFF, band-first or band-last (detected, or ``band_axis``).
    Wavelengths written by :func:`write_cube` (JSON in the description) are read back."""
    import tifffile

    path = Path(path)
    check_file(path)
    try:
        with tifffile.TiffFile(path) as tf:
            arr = tf.asarray()
            md = tf.shaped_metadata[0] if tf.shaped_metadata else {}
    except Exception as exc:
        raise CubeError(f"{path}: not a readable TIFF file ({exc})") from None
    arr = np.squeeze(arr) if arr.ndim > 3 else arr
    wl = md.get("wavelengths_nm") if isinstance(md, dict) else None
    if arr.ndim != 3:
        raise CubeError(f"{path}: TIFF holds {arr.ndim}-D data of shape {arr.shape}; a cube needs 3 dimensions")
    if band_axis is None and isinstance(md, dict) and md.get("axes") == "CYX":
        band_axis = 0
    cube_raw = to_band_first(arr, band_axis, None if wl is None else len(wl), what=str(path))
    norm_used = norm
    if norm == "auto" and isinstance(md, dict) and md.get("norm_scale") and arr.dtype.kind == "f":
        norm_used = 1.0  # written by us: already in [0, 1]
    return make_cube(np.ascontiguousarray(cube_raw), path, path.stem, wl, None, norm_used, None, {"format": "tiff"})


def write_tiff(cube: Cube, data: np.ndarray, path: Path, overwrite: bool) -> list[str]:
    """Band-first float32; axes, norm scale, name and wavelengths in the JSON description."""
    import tifffile

    md = {"axes": "CYX", "norm_scale": float(cube.norm_scale), "name": cube.name}
    if cube.wavelengths is not None:
        md["wavelengths_nm"] = [float(w) for w in cube.wavelengths]
    with new_files([path], overwrite) as (tmp,):
        tifffile.imwrite(tmp, data, metadata=md, photometric="minisblack")
    return [str(path)]
