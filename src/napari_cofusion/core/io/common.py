"""Shared by the format modules: band-axis detection, normalisation to [0, 1], the Cube they
build, and safe output (a new file written through a temporary one beside it)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from napari_cofusion.core.cube import Cube, check_cube_array, normalise, normalise_wavelengths_nm
from napari_cofusion.core.errors import CubeError

__all__ = ["CAVE_WAVELENGTHS", "WL_KEYS", "check_file", "to_band_first", "normalise", "make_cube", "find_wavelengths",
           "cube_candidates", "describe_arrays", "check_target", "temp_beside", "write_json"]

CAVE_WAVELENGTHS = np.arange(400.0, 701.0, 10.0)
WL_KEYS = ("wavelength", "wavelengths", "wavelength_nm", "wl", "wave", "lambda", "bands_nm", "centers")


def check_file(path: Path) -> None:
    if not path.exists():
        raise CubeError(f"{path}: no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise CubeError(f"{path}: file is empty")


def to_band_first(
    arr: np.ndarray,
    band_axis: int | None = None,
    n_wavelengths: int | None = None,
    what: str = "array",
) -> np.ndarray:
    """Move the band axis of a 3-D array to the front.

    The band axis is ``band_axis`` when given; else the axis whose length equals the number of
    wavelengths (when exactly one does); else the first or the last axis, whichever leaves the
    other two closest to square (images are rarely long thin strips; ties go to the smaller
    axis, then band-last). The smallest axis is a poor guess: PaviaU is 50×50×103.
    """
    a = np.asarray(arr)
    if a.ndim != 3:
        raise CubeError(f"{what}: expected a 3-D cube, got {a.ndim}-D data of shape {a.shape}")
    if band_axis is None:
        if n_wavelengths is not None:
            matches = [i for i, s in enumerate(a.shape) if s == n_wavelengths]
            if len(matches) == 1:
                band_axis = matches[0]
        if band_axis is None:
            def aspect(i: int) -> float:
                r, c = (s for j, s in enumerate(a.shape) if j != i)
                return max(r, c) / min(r, c)

            band_axis = min((0, 2), key=lambda i: (aspect(i), a.shape[i], -i))
    if not -3 <= band_axis < 3:
        raise CubeError(f"{what}: band_axis {band_axis} is out of range for a 3-D array")
    return np.moveaxis(a, band_axis, 0)


def make_cube(
    raw: np.ndarray,
    path: Path,
    name: str,
    wavelengths: Any = None,
    wl_units: str | None = None,
    norm: str | float = "auto",
    file_scale: float | None = None,
    meta: dict | None = None,
    scale_source: str = "",
) -> Cube:
    data, factor, n_clip = normalise(raw, norm, file_scale, what=str(path), scale_source=scale_source)
    data = check_cube_array(data, str(path))
    try:
        wl = normalise_wavelengths_nm(wavelengths, data.shape[0], wl_units)
    except CubeError as exc:
        raise CubeError(f"{path}: {exc}") from None
    m = dict(meta or {})
    if n_clip:
        m["clipped"] = n_clip
    m.setdefault("raw_dtype", str(raw.dtype))
    return Cube(data, wavelengths=wl, norm_scale=factor, name=name, source=str(path), meta=m)


def find_wavelengths(arrays: dict[str, np.ndarray], n_candidates: Iterable[int]) -> np.ndarray | None:
    cands = set(n_candidates)
    for k, v in arrays.items():
        if k.lower().split("/")[-1] in WL_KEYS:
            flat = np.asarray(v, dtype=np.float64).ravel()
            if flat.size in cands:
                return flat
    return None


def cube_candidates(arrays: dict[str, np.ndarray]) -> list[str]:
    """3-D arrays, largest first; ties go to the one with more bands (the larger smallest axis)."""
    keys = [k for k, v in arrays.items() if v.ndim == 3 and min(v.shape) > 0]
    return sorted(keys, key=lambda k: (arrays[k].size, min(arrays[k].shape)), reverse=True)


def describe_arrays(arrays: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{k} {'×'.join(map(str, v.shape))}" for k, v in arrays.items()) or "none"


def check_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise CubeError(f"{path}: already exists; choose another name or pass overwrite=True")
    if not path.parent.exists():
        raise CubeError(f"{path.parent}: folder does not exist")


def temp_beside(path: Path, suffix: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_json(obj: Any, path: str | os.PathLike, overwrite: bool = False) -> str:
    """Atomic, non-overwriting JSON writer for recipes and cards."""
    path = Path(path)
    check_target(path, overwrite)
    tmp = temp_beside(path, ".json")
    try:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return str(path)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
