"""Spectra at a pixel: which pixel of which cube belongs to a location on the high-resolution
grid, the spectra themselves, and their CSV export. No Qt or napari dependency.

Several cubes of one scene are shown together: the HR cubes (reference, fused result, HRMSI)
share the high-resolution grid of H×W pixels, the LRHSI has h×w pixels with H = s·h. A location
(row, col) on the HR grid is sampled at that pixel in every HR-size cube and at
``(row·h // H, col·w // W)`` in a smaller one: the LR pixel whose footprint holds it (the
integer division by the size ratio).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from napari_cofusion.core.errors import CubeError

__all__ = ["Spectrum", "CSV_COLUMNS", "hr_shape", "map_pixel", "pixel_from_coords", "sample_spectrum",
           "sample_spectra", "csv_rows", "write_csv"]

#: Columns of the long-format CSV export, one row per (curve, band).
CSV_COLUMNS = ("layer", "row", "col", "pinned", "wavelength_nm", "value")


@dataclass
class Spectrum:
    """One curve: ``values[b]`` of cube ``layer`` at pixel (``row``, ``col``) of that cube."""

    layer: str
    row: int
    col: int
    values: np.ndarray
    wavelengths: np.ndarray | None = None
    pinned: bool = False

    @property
    def label(self) -> str:
        return f"{self.layer} ({self.row}, {self.col})"

    def x(self) -> np.ndarray:
        """Wavelengths in nm, or band indices when they are unknown."""
        return self.wavelengths if self.wavelengths is not None else np.arange(self.values.size, dtype=float)


def hr_shape(shapes: Iterable[Sequence[int]]) -> tuple[int, int]:
    """The high-resolution grid among cube shapes ``(C, H, W)`` (or ``(H, W)``): the largest H×W."""
    sizes = [(int(s[-2]), int(s[-1])) for s in shapes]
    if not sizes:
        raise CubeError("no cube to take spectra from")
    return max(sizes, key=lambda hw: (hw[0] * hw[1], hw))


def map_pixel(row: int, col: int, hr: Sequence[int], shape: Sequence[int]) -> tuple[int, int]:
    """The pixel of a cube with spatial size ``shape[-2:]`` that holds HR pixel (row, col) of an
    ``hr[-2:]`` grid: the same pixel at the same size, ``(row·h // H, col·w // W)`` otherwise."""
    H, W = int(hr[-2]), int(hr[-1])
    h, w = int(shape[-2]), int(shape[-1])
    if not (0 <= row < H and 0 <= col < W):
        raise CubeError(f"pixel ({row}, {col}) is outside the {H}×{W} grid")
    if (h, w) == (H, W):
        return int(row), int(col)
    return int(row) * h // H, int(col) * w // W


def pixel_from_coords(coords: Sequence[float], shape: Sequence[int]) -> tuple[int, int] | None:
    """The (row, col) pixel holding continuous data coordinates ``coords[-2:]`` (pixel centres at
    integers, as napari places them), or None outside an image of spatial size ``shape[-2:]``."""
    if len(coords) < 2:
        raise CubeError(f"need at least (row, col) coordinates, got {tuple(coords)}")
    r, c = (float(v) for v in coords[-2:])
    if not (np.isfinite(r) and np.isfinite(c)):
        return None
    ri, ci = int(np.floor(r + 0.5)), int(np.floor(c + 0.5))
    if 0 <= ri < int(shape[-2]) and 0 <= ci < int(shape[-1]):
        return ri, ci
    return None


def _wl(wavelengths: Any, n: int) -> np.ndarray | None:
    if wavelengths is None:
        return None
    w = np.asarray(wavelengths, dtype=np.float64).ravel()
    return w if w.size == n else None


def sample_spectrum(name: str, data: Any, row: int, col: int, wavelengths: Any = None) -> Spectrum:
    """The spectrum ``data[:, row, col]`` of a (C, H, W) cube (numpy or any array-like, e.g. dask)."""
    shape = tuple(int(s) for s in np.shape(data))
    if len(shape) != 3:
        raise CubeError(f"{name}: expected a (bands, rows, columns) cube, got shape {shape}")
    if not (0 <= row < shape[1] and 0 <= col < shape[2]):
        raise CubeError(f"{name}: pixel ({row}, {col}) is outside its {shape[1]}×{shape[2]} pixels")
    values = np.asarray(data[:, row, col], dtype=np.float64).ravel()
    return Spectrum(layer=name, row=int(row), col=int(col), values=values, wavelengths=_wl(wavelengths, values.size))


def sample_spectra(cubes: Sequence[tuple[str, Any, Any]], row: int, col: int,
                   hr: Sequence[int] | None = None) -> list[Spectrum]:
    """Spectra of every ``(name, data, wavelengths)`` cube at HR location (row, col).

    ``hr`` is the HR grid's (H, W) (default: the largest cube's). HR-size cubes are sampled at
    (row, col), smaller ones at the LR pixel holding it (:func:`map_pixel`).
    """
    if not cubes:
        return []
    grid = tuple(hr[-2:]) if hr is not None else hr_shape([np.shape(d) for _, d, _ in cubes])
    out = []
    for name, data, wl in cubes:
        r, c = map_pixel(row, col, grid, np.shape(data))
        out.append(sample_spectrum(name, data, r, c, wl))
    return out


def csv_rows(spectra: Iterable[Spectrum]) -> list[dict[str, Any]]:
    """Long format: one row per curve and band, with the columns of :data:`CSV_COLUMNS`
    (``wavelength_nm`` empty where the wavelengths are unknown)."""
    rows = []
    for s in spectra:
        for b, v in enumerate(s.values):
            rows.append({
                "layer": s.layer, "row": s.row, "col": s.col, "pinned": bool(s.pinned),
                "wavelength_nm": "" if s.wavelengths is None else float(s.wavelengths[b]),
                "value": float(v),
            })
    return rows


def write_csv(spectra: Iterable[Spectrum], path: "str | os.PathLike") -> Path:
    """Write the curves as CSV (:func:`csv_rows`); never overwrites an existing file."""
    p = Path(path)
    rows = csv_rows(spectra)
    if not rows:
        raise CubeError("no spectra to export: click on the image first")
    if p.exists():
        raise CubeError(f"{p}: already exists; choose another file name")
    if not p.parent.is_dir():
        raise CubeError(f"{p.parent}: folder not found")
    try:
        with open(p, "x", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS))
            writer.writeheader()
            writer.writerows(rows)  # floats as repr: they read back exactly
    except FileExistsError:
        raise CubeError(f"{p}: already exists; choose another file name") from None
    except OSError as exc:
        raise CubeError(f"{p}: could not write the CSV ({exc.strerror or exc})") from None
    return p
