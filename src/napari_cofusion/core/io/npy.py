"""NumPy ``.npy`` arrays and ``.npz`` archives (never unpickled)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError
from napari_cofusion.core.io.common import (
    check_file, check_target, cube_candidates, describe_arrays, find_wavelengths, make_cube, temp_beside, to_band_first,
)

__all__ = ["read_numpy", "write_numpy", "npz_arrays"]


def read_numpy(
    path: str | os.PathLike, key: str | None = None, band_axis: int | None = None, norm: str | float = "auto"
) -> Cube:
    """A ``.npy`` array, or an array of a ``.npz`` archive (largest 3-D one without ``key``;
    a ``wavelengths`` entry, if any, gives the band centres). Never unpickles."""
    path = Path(path)
    check_file(path)
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        else:
            arrays = {path.stem: np.load(path, allow_pickle=False)}
    except ValueError as exc:
        raise CubeError(f"{path}: refused: it holds Python objects that would need unpickling ({exc})") from None
    except Exception as exc:
        raise CubeError(f"{path}: not a readable NumPy file ({exc})") from None
    arrays = {k: v for k, v in arrays.items() if isinstance(v, np.ndarray) and v.dtype.kind in "biuf"}
    if key is None:
        cands = cube_candidates(arrays)
        if not cands:
            raise CubeError(f"{path}: no 3-D numeric array (arrays: {describe_arrays(arrays)})")
        key = cands[0]
    if key not in arrays:
        raise CubeError(f"{path}: no numeric array named {key!r} (arrays: {describe_arrays(arrays)})")
    arr = arrays[key]
    if arr.ndim != 3:
        raise CubeError(f"{path}: {key} is {arr.ndim}-D with shape {arr.shape}; a cube needs 3 dimensions")
    wl = find_wavelengths(arrays, arr.shape)
    cube_raw = to_band_first(arr, band_axis, None if wl is None else wl.size, what=str(path))
    name = path.stem if path.suffix.lower() == ".npy" else f"{path.stem}:{key}"
    return make_cube(np.ascontiguousarray(cube_raw), path, name, wl, None, norm, None, {"format": "numpy"})


def npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` archive (empty when it cannot be read without unpickling)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception:  # noqa: BLE001 - read_numpy reports the problem when the file is opened
        return {}


def write_numpy(cube: Cube, data: np.ndarray, path: Path, overwrite: bool) -> list[str]:
    """``.npy``: the data; ``.npz``: ``data`` and ``wavelengths``. New file only, atomic."""
    suf = path.suffix.lower()
    check_target(path, overwrite)
    tmp = temp_beside(path, suf)
    try:
        with open(tmp, "wb") as fh:
            if suf == ".npy":
                np.save(fh, data)
            else:
                extra = {} if cube.wavelengths is None else {"wavelengths": cube.wavelengths}
                np.savez_compressed(fh, data=data, **extra)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return [str(path)]
