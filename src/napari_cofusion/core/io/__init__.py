"""Reading and writing hyperspectral cubes: one module per format (``envi``, ``mat``, ``tiff``,
``npy``, ``png``, ``zarr``), shared helpers in ``common``, and here the dispatch by file type.

Readers return :class:`~napari_cofusion.core.cube.Cube` objects (band-first float32 in [0, 1]).
Every failure is a :class:`~napari_cofusion.core.cube.CubeError` that names the file and what is
wrong with it. Writers never overwrite an existing file unless ``overwrite=True`` and write
through a temporary file that is renamed into place, so an interrupted write leaves the
old file (if any) untouched.

Normalisation to [0, 1] (``norm``):

* ``"auto"`` (default): a scale factor from the file (ENVI ``reflectance scale factor``)
  when present; otherwise integer data is divided by its type's full range (uint16 → 65535,
  as CAVE's protocol does); float data already in [0, 1] is kept and other float data is
  divided by its maximum.
* ``"max"``: divide by the cube's maximum (useful for sensors that use a fraction of the range).
* a number: divide by it.

Negative values (dark-current noise in some sensors) are clipped to 0 and values above the
full scale to 1; the count is kept in ``cube.meta["clipped"]``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable


from napari_cofusion.core.cube import Cube, check_cube_array
from napari_cofusion.core.errors import CubeError
from napari_cofusion.core.io.common import (
    CAVE_WAVELENGTHS, check_file, cube_candidates, normalise, to_band_first, write_json,
)
from napari_cofusion.core.io.envi import ENVI_DATA_EXTS, has_envi_header, read_envi, write_envi
from napari_cofusion.core.io.mat import mat_arrays, read_mat
from napari_cofusion.core.io.npy import npz_arrays, read_numpy, write_numpy
from napari_cofusion.core.io.png import png_bands, read_png_folder
from napari_cofusion.core.io.tiff import TIFF_EXTS, read_tiff, write_tiff
from napari_cofusion.core.io.zarr import check_store_target, is_zarr_path, read_zarr, write_zarr

__all__ = ["read_cube", "read_cubes", "read_envi", "read_mat", "read_tiff", "read_numpy", "read_png_folder",
           "write_cube", "write_json", "to_band_first", "normalise", "is_cube_path", "CAVE_WAVELENGTHS", "read_zarr",
           "check_output"]


def check_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse, before any work, an output cube that exists (unless ``overwrite``) or cannot be
    written: ENVI's header and data file both, a zarr store's folder, any other file itself."""
    from napari_cofusion.core.io.common import check_target

    p = Path(path)
    if is_zarr_path(p):
        return check_store_target(p, overwrite)
    for q in ((p.with_suffix(".hdr"), p.with_suffix(".img")) if p.suffix.lower() in (".hdr", ".img") else (p,)):
        check_target(q, overwrite)
    return p


def is_cube_path(path: str | os.PathLike) -> bool:
    """Whether one of the readers claims this path (by extension, or a folder of band PNGs)."""
    p = Path(path)
    if p.is_dir() and is_zarr_path(p):
        return True
    if p.is_dir():
        try:
            return bool(png_bands(p))
        except OSError:
            return False
    suf = p.suffix.lower()
    if suf in (".hdr", ".mat", ".npy", ".npz") + TIFF_EXTS:
        return True
    return suf in ENVI_DATA_EXTS[:-1] and has_envi_header(p)


def read_cube(path: str | os.PathLike, **kwargs: Any) -> Cube:
    """Read one cube from any supported file or band-PNG folder (keyword arguments go to the
    format's reader: ``key``, ``band_axis``, ``norm``, ``spatial_shape``)."""
    p = Path(path)
    if not p.exists():
        raise CubeError(f"{p}: no such file or folder")
    suf = p.suffix.lower()
    if p.is_dir() and is_zarr_path(p):
        return read_zarr(p, **kwargs)
    if p.is_dir():
        return read_png_folder(p, **kwargs)
    if suf in (".hdr",) or (suf in ENVI_DATA_EXTS[:-1] and suf not in TIFF_EXTS):
        return read_envi(p, **kwargs)
    if suf == ".mat":
        return read_mat(p, **kwargs)
    if suf in TIFF_EXTS:
        return read_tiff(p, **kwargs)
    if suf in (".npy", ".npz"):
        return read_numpy(p, **kwargs)
    raise CubeError(f"{p}: unsupported file type {suf or '(no extension)'}; use ENVI, .mat, TIFF, .npy/.npz, a .zarr store or a band-PNG folder")


def read_cubes(path: str | os.PathLike) -> list[Cube]:
    """Every cube a file holds: all 3-D arrays of a ``.mat``/``.npz`` (e.g. the HS and the RGB
    image of a fusion pair), one cube for the other formats."""
    p = Path(path)
    suf = p.suffix.lower()
    if suf in (".mat", ".npz") and p.is_file():
        if suf == ".mat":
            check_file(p)
            arrays, from_hdf5 = mat_arrays(p)
            if from_hdf5:
                arrays = {k: v.T for k, v in arrays.items()}
            reader: Callable[..., Cube] = read_mat
        else:
            arrays = npz_arrays(p)
            reader = read_numpy
        keys = cube_candidates(arrays)
        if len(keys) > 1:
            return [reader(p, key=k) for k in keys]
    return [read_cube(p)]


def write_cube(cube: Cube, path: str | os.PathLike, overwrite: bool = False) -> list[str]:
    """Write a cube as ENVI (``.hdr`` + ``.img``, BSQ float32, wavelengths in the header),
    TIFF (``.tif``/``.tiff``, band-first float32, wavelengths in the JSON description) or
    NumPy (``.npy`` data only; ``.npz`` with ``data`` and ``wavelengths``). Returns the
    paths written. Refuses to overwrite unless asked; writes atomically."""
    path = Path(path)
    suf = path.suffix.lower()
    data = check_cube_array(cube.data, cube.name)
    if suf in (".hdr", ".img"):
        return write_envi(cube, data, path.with_suffix(".hdr"), overwrite)
    if suf in TIFF_EXTS:
        return write_tiff(cube, data, path, overwrite)
    if suf in (".npy", ".npz"):
        return write_numpy(cube, data, path, overwrite)
    if suf == ".zarr":
        return write_zarr(cube, data, path, overwrite)
    raise CubeError(f"{path}: unsupported output type {suf or '(no extension)'}; use .hdr, .tif, .npy/.npz or .zarr")
