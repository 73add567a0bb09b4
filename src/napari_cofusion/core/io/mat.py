"""MATLAB ``.mat`` files, v5 (scipy) and v7.3 (HDF5 through h5py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError
from napari_cofusion.core.io.common import (
    check_file, cube_candidates, describe_arrays, find_wavelengths, make_cube, to_band_first,
)

__all__ = ["read_mat", "mat_arrays"]


def mat_arrays(path: Path) -> tuple[dict[str, np.ndarray], bool]:
    """All numeric arrays of a .mat file (v5 through scipy, v7.3 through h5py); the flag says
    whether the axes came from HDF5 (reversed w.r.t. MATLAB)."""
    import scipy.io

    with open(path, "rb") as fh:
        head = fh.read(128)
    if len(head) < 128:
        raise CubeError(f"{path}: too short to be a MATLAB file ({len(head)} bytes)")
    if head.startswith(b"\x89HDF") or b"MATLAB 7.3" in head[:116]:
        import h5py

        out: dict[str, np.ndarray] = {}
        try:
            with h5py.File(path, "r") as f:
                def visit(name: str, obj: Any) -> None:
                    if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "biuf":
                        out[name] = obj[()]
                f.visititems(visit)
        except OSError as exc:
            raise CubeError(f"{path}: could not read MATLAB v7.3 (HDF5) file ({exc})") from None
        return out, True
    try:
        d = scipy.io.loadmat(path)
    except Exception as exc:
        raise CubeError(f"{path}: not a readable MATLAB file ({exc})") from None
    return {k: v for k, v in d.items() if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype.kind in "biuf"}, False


def read_mat(
    path: str | os.PathLike,
    key: str | None = None,
    band_axis: int | None = None,
    norm: str | float = "auto",
    spatial_shape: tuple[int, int] | None = None,
) -> Cube:
    """A cube from a MATLAB ``.mat`` file (v5 or v7.3).

    Without ``key`` the largest 3-D numeric array is taken. The band axis is detected
    (:func:`to_band_first`) unless ``band_axis`` is given. A 2-D ``(bands, pixels)`` matrix
    (e.g. unmixing benchmarks) is accepted with ``spatial_shape=(rows, cols)`` and reshaped
    column-major, as MATLAB stores it.
    """
    path = Path(path)
    check_file(path)
    arrays, from_hdf5 = mat_arrays(path)
    if from_hdf5:
        arrays = {k: np.asarray(v).T for k, v in arrays.items()}
    if key is None:
        cands = cube_candidates(arrays)
        if not cands:
            raise CubeError(
                f"{path}: no 3-D numeric array in this file (arrays: {describe_arrays(arrays)}); "
                "name a key, and give spatial_shape for a (bands, pixels) matrix"
            )
        key = cands[0]
    if key not in arrays:
        raise CubeError(f"{path}: no numeric array named {key!r} (arrays: {describe_arrays(arrays)})")
    arr = arrays[key]
    if arr.ndim == 2 and spatial_shape is not None:
        rows, cols = spatial_shape
        if rows * cols not in arr.shape:
            raise CubeError(f"{path}: {key} has shape {arr.shape}, which does not hold {rows}×{cols} pixels")
        mat = arr if arr.shape[1] == rows * cols else arr.T  # (bands, pixels)
        arr = mat.reshape(mat.shape[0], cols, rows).transpose(0, 2, 1)  # column-major pixels
        band_axis = 0
    elif arr.ndim != 3:
        raise CubeError(
            f"{path}: {key} is {arr.ndim}-D with shape {arr.shape}; a cube needs 3 dimensions"
            + (" (for a (bands, pixels) matrix give spatial_shape=(rows, cols))" if arr.ndim == 2 else "")
        )
    wl = find_wavelengths(arrays, arr.shape)
    cube_raw = to_band_first(arr, band_axis, None if wl is None else wl.size, what=f"{path}:{key}")
    if wl is not None and wl.size != cube_raw.shape[0]:
        wl = None
    return make_cube(np.ascontiguousarray(cube_raw), path, key, wl, None, norm, None, {"format": "mat", "key": key})
