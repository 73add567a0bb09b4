"""NumPy ``.npy`` arrays and ``.npz`` archives (never unpickled)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError
from napari_cofusion.core.io.common import (
    check_file, cube_candidates, describe_arrays, find_wavelengths, make_cube, new_files, to_band_first,
)

__all__ = ["read_numpy", "write_numpy", "npz_arrays", "sidecar"]


def read_numpy(
    path: str | os.PathLike, key: str | None = None, band_axis: int | None = None, norm: str | float = "auto"
) -> Cube:
    """A ``.npy`` array, or an array of a ``.npz`` archive (largest 3-D one without ``key``;
    a ``wavelengths`` entry, if any, gives the band centres). Never unpickles.

    What the project writes is band-first and says so (an ``axes`` entry "CYX" in a ``.npz``, a
    ``NAME.npy.json`` beside a ``.npy``), so it reads back whatever its shape; other arrays have
    their band axis detected (:func:`~napari_cofusion.core.io.common.to_band_first`)."""
    path = Path(path)
    check_file(path)
    side = sidecar(path)
    info: dict = {}
    if path.suffix.lower() == ".npy" and side.is_file():
        try:
            info = json.loads(side.read_text())
        except (OSError, ValueError) as exc:
            raise CubeError(f"{side}: not a readable cube description ({exc})") from None
        if not isinstance(info, dict):
            raise CubeError(f"{side}: expected a JSON object describing {path.name}")
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
    axes = arrays.get("axes")
    if axes is not None and axes.dtype.kind == "U":
        info = {"axes": str(axes)}
    arrays = {k: v for k, v in arrays.items() if isinstance(v, np.ndarray) and v.dtype.kind in "biuf"}
    if band_axis is None and info.get("axes") == "CYX":
        band_axis = 0
    if info.get("wavelengths_nm") is not None:
        arrays.setdefault("wavelengths", np.asarray(info["wavelengths_nm"], dtype=np.float64))
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


def sidecar(path: Path) -> Path:
    """The JSON beside a ``.npy`` that says its axes and wavelengths: ``NAME.npy.json``."""
    return path.with_name(path.name + ".json")


def write_numpy(cube: Cube, data: np.ndarray, path: Path, overwrite: bool) -> list[str]:
    """``.npy``: the data, and ``NAME.npy.json`` with its axes and wavelengths; ``.npz``: ``data``,
    ``axes`` and ``wavelengths``. New files only unless ``overwrite``, atomic, all or nothing."""
    wl = None if cube.wavelengths is None else [float(w) for w in cube.wavelengths]
    if path.suffix.lower() == ".npz":
        with new_files([path], overwrite) as (tmp,), open(tmp, "wb") as fh:
            extra = {} if wl is None else {"wavelengths": np.asarray(wl)}
            np.savez_compressed(fh, data=data, axes=np.array("CYX"), **extra)
        return [str(path)]
    info = {"axes": "CYX", "name": cube.name, "norm_scale": float(cube.norm_scale), "wavelengths_nm": wl}
    with new_files([path, sidecar(path)], overwrite) as (tmp, tmp_side):
        with open(tmp, "wb") as fh:
            np.save(fh, data)
        tmp_side.write_text(json.dumps(info, indent=2) + "\n")
    return [str(path), str(sidecar(path))]
