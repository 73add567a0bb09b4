"""Zarr stores (``NAME.zarr`` folders): the block-wise output of large fusions, readable lazily.

A cube is one float32 array ``(C, H, W)`` at the store's root, chunked one band × a square of
pixels, so that a viewer showing one band reads only that band's chunks. Its attributes hold
``napari_cofusion`` = {name, wavelengths_nm, norm_scale, meta}.

* :class:`ZarrSink` writes blocks as they complete into a hidden temporary store beside the
  target and gives it its name on :meth:`~ZarrSink.close` (an existing store is replaced only
  with ``overwrite``, and then only once the new one is complete); its :meth:`~ZarrSink.target`
  is the zarr array itself, which dask workers write to directly.
* :func:`read_zarr` reads a store into a :class:`~napari_cofusion.core.cube.Cube`;
  :func:`open_zarr_lazy` returns a dask array over it and its attributes (napari's lazy layers).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError
from napari_cofusion.core.io.common import json_safe

__all__ = ["ZARR_SUFFIX", "ATTRS_KEY", "is_zarr_path", "check_store_target", "ZarrSink", "read_zarr", "write_zarr", "open_zarr_lazy"]

ZARR_SUFFIX = ".zarr"
ATTRS_KEY = "napari_cofusion"


def is_zarr_path(path: str | os.PathLike) -> bool:
    """A ``.zarr`` folder (or a name for one)."""
    return str(path).lower().rstrip("/\\").endswith(ZARR_SUFFIX)


def check_store_target(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse, before any work, a store name that does not end in .zarr, that exists (unless
    ``overwrite``) or is a file, or whose folder is missing or not writable."""
    p = Path(path)
    if not is_zarr_path(p):
        raise CubeError(f"{p}: a zarr store's name ends in {ZARR_SUFFIX}")
    if p.exists() and not overwrite:
        raise CubeError(f"{p}: already exists; choose another name (or allow overwriting)")
    if p.exists() and not p.is_dir():
        raise CubeError(f"{p}: is a file, not a zarr store")
    if not p.parent.is_dir():
        raise CubeError(f"{p.parent}: folder does not exist")
    if not os.access(p.parent, os.W_OK | os.X_OK):
        raise CubeError(f"{p.parent}: folder is not writable")
    return p


class ZarrSink:
    """A (C, H, W) float32 zarr store written block by block (``fuse(..., out="NAME.zarr")``)."""

    def __init__(self, path: str | os.PathLike, bands: int, H: int, W: int, chunk: int = 256,
                 overwrite: bool = False) -> None:
        import zarr

        self.path = check_store_target(path, overwrite)
        parent = self.path.parent
        self.overwrite = overwrite
        self.shape = (int(bands), int(H), int(W))
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.{os.getpid()}.", suffix=".partial", dir=parent))
        c = max(1, min(int(chunk), max(H, W)))
        self.array = zarr.create_array(store=str(self.tmp), shape=self.shape, chunks=(1, c, c), dtype="float32",
                                       fill_value=0.0, overwrite=True)
        self.chunk = c
        self._open = True

    def write(self, block, data: np.ndarray) -> None:
        self.array[:, block.y0:block.y1, block.x0:block.x1] = np.asarray(data, dtype=np.float32)

    def target(self):
        """The zarr array (picklable: dask workers write their blocks to the store directly)."""
        return self.array

    def close(self, name: str, wavelengths=None, norm_scale: float = 1.0, meta: dict | None = None) -> list[str]:
        self.array.attrs[ATTRS_KEY] = json_safe({
            "name": name, "wavelengths_nm": None if wavelengths is None else [float(w) for w in wavelengths],
            "norm_scale": float(norm_scale), "meta": meta or {}})
        old = None
        if self.path.exists():
            if not self.overwrite:
                self.abort()
                raise CubeError(f"{self.path}: was created by someone else while this was being written; nothing replaced")
            old = self.path.with_name(f".{self.path.name}.{os.getpid()}.old")
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._open = False
        return [str(self.path)]

    def abort(self) -> None:
        if self._open:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self._open = False


def write_zarr(cube: Cube, data: np.ndarray, path: str | os.PathLike, overwrite: bool = False) -> list[str]:
    """A whole cube as a zarr store (through :class:`ZarrSink`: all or nothing)."""
    C, H, W = data.shape
    sink = ZarrSink(path, C, H, W, overwrite=overwrite)
    try:
        sink.array[...] = np.asarray(data, dtype=np.float32)
    except BaseException:
        sink.abort()
        raise
    return sink.close(cube.name, cube.wavelengths, cube.norm_scale, cube.meta)


def _open(path: str | os.PathLike):
    import zarr

    p = Path(path)
    if not p.is_dir():
        raise CubeError(f"{p}: no such zarr store")
    try:
        arr = zarr.open_array(str(p), mode="r")
    except Exception as exc:  # zarr raises several kinds for a folder that is not a store
        raise CubeError(f"{p}: not a readable zarr array ({type(exc).__name__}: {exc})") from None
    if arr.ndim != 3:
        raise CubeError(f"{p}: holds a {arr.ndim}-D array; a cube is (bands, rows, columns)")
    attrs = dict(arr.attrs.get(ATTRS_KEY) or {})
    return arr, attrs


def read_zarr(path: str | os.PathLike, **_: Any) -> Cube:
    """The whole cube of a store, in memory."""
    arr, attrs = _open(path)
    data = np.asarray(arr[...], dtype=np.float32)
    wl = attrs.get("wavelengths_nm")
    return Cube(data, wavelengths=None if wl is None else np.asarray(wl, dtype=np.float64),
                norm_scale=float(attrs.get("norm_scale", 1.0)), name=attrs.get("name") or Path(path).stem,
                source=str(path), meta=dict(attrs.get("meta") or {}))


def open_zarr_lazy(path: str | os.PathLike):
    """(dask array over the store, its ``napari_cofusion`` attributes): nothing is read yet."""
    import dask.array as da

    arr, attrs = _open(path)
    return da.from_array(arr, chunks=arr.chunks), attrs
