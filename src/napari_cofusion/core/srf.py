"""Spectral response functions (SRF): the (c, C) matrix that maps a hyperspectral cube to a
multispectral one.

An SRF is given either as a matrix already matched to the cube's bands, or as response
curves on a wavelength grid; curves are resampled (linear interpolation) at the cube's band
centres and each row normalised to sum to 1, as PROTOCOL.md says. Presets:

========================  ==============================================================
``nikon-d700``            Nikon D700 RGB at the 31 CAVE bands (3×31 matrix; CAVE protocol)
``ikonos``                IKONOS B, G, R, NIR curves (350–1035 nm)
``rosis-ikonos4``         the ROSIS (103 bands, PaviaU) → IKONOS-like 4-band matrix
``landsat8-oli``          Landsat-8 OLI bands 1–7 (from ``pyrsr``)
``sentinel2``             Sentinel-2A MSI bands B2–B8A, B11, B12 (from ``pyrsr``)
========================  ==============================================================

A user's own SRF is a CSV (first column wavelength in nm, one column per band; or, with no
header, a plain c×C matrix) or a ``.mat`` / ``.npy`` matrix or curves.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from napari_cofusion.core.errors import CubeError

__all__ = ["SRF", "get_srf", "srf_presets", "load_srf_file"]


@dataclass
class SRF:
    """A spectral response.

    Either ``matrix`` (c, C) tied to a band count, or ``curves`` (c, N) on ``wavelengths`` (N,)
    nm, resampled by :meth:`matrix_for`.
    """

    name: str
    band_names: list[str]
    matrix: np.ndarray | None = None
    curves: np.ndarray | None = None
    wavelengths: np.ndarray | None = None
    normalise_rows: bool = True
    note: str = ""
    dropped: list[str] = field(default_factory=list)

    @property
    def n_bands(self) -> int:
        arr = self.matrix if self.matrix is not None else self.curves
        return int(arr.shape[0])  # type: ignore[union-attr]

    def matrix_for(self, n_hs_bands: int, hs_wavelengths: np.ndarray | None = None, min_coverage: float = 0.5) -> np.ndarray:
        """The (c, C) matrix for a cube with ``n_hs_bands`` bands at ``hs_wavelengths`` nm.

        For curves, bands whose response lies less than ``min_coverage`` inside the cube's
        wavelength range are dropped (their names go to ``self.dropped``): projecting onto
        them would mostly be extrapolation.
        """
        if self.matrix is not None and (self.curves is None or self.matrix.shape[1] == n_hs_bands):
            m = np.asarray(self.matrix, dtype=np.float64)
            if m.shape[1] != n_hs_bands:
                raise CubeError(
                    f"SRF '{self.name}' is a {m.shape[0]}×{m.shape[1]} matrix for {m.shape[1]} bands, "
                    f"but the cube has {n_hs_bands} bands"
                )
        else:
            if hs_wavelengths is None:
                raise CubeError(
                    f"SRF '{self.name}' is given as response curves; the cube needs wavelengths to resample them"
                )
            wl = np.asarray(hs_wavelengths, dtype=np.float64)
            grid = np.asarray(self.wavelengths, dtype=np.float64)
            curves = np.clip(np.asarray(self.curves, dtype=np.float64), 0, None)
            m = np.stack([np.interp(wl, grid, c, left=0.0, right=0.0) for c in curves])
            lo, hi = wl.min(), wl.max()
            inside = ((grid >= lo) & (grid <= hi))[None, :]
            total = np.trapezoid(curves, grid, axis=1) if hasattr(np, "trapezoid") else np.trapz(curves, grid, axis=1)
            within = (
                np.trapezoid(curves * inside, grid, axis=1) if hasattr(np, "trapezoid") else np.trapz(curves * inside, grid, axis=1)
            )
            cover = np.where(total > 0, within / np.where(total > 0, total, 1), 0)
            keep = (cover >= min_coverage) & (m.sum(1) > 0)
            self.dropped = [n for n, k in zip(self.band_names, keep) if not k]
            if not keep.any():
                raise CubeError(
                    f"SRF '{self.name}': none of its bands ({', '.join(self.band_names)}) lies within the cube's "
                    f"wavelength range {lo:.0f}–{hi:.0f} nm"
                )
            m = m[keep]
        if self.normalise_rows:
            sums = m.sum(axis=1, keepdims=True)
            if (sums <= 0).any():
                raise CubeError(f"SRF '{self.name}' has a band with no response over the cube's bands")
            m = m / sums
        return m.astype(np.float32)

    def kept_band_names(self) -> list[str]:
        return [n for n in self.band_names if n not in self.dropped]

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "band_names": self.kept_band_names()}
        if self.dropped:
            d["dropped"] = self.dropped
        return d


def _read_csv_rows(path: Path | Any) -> tuple[list[str] | None, np.ndarray]:
    text = path.read_text() if hasattr(path, "read_text") else Path(path).read_text()
    rows = [r for r in csv.reader(line for line in text.splitlines() if line.strip() and not line.startswith("#"))]
    header = None
    try:
        float(rows[0][0])
    except (ValueError, IndexError):
        header, rows = rows[0], rows[1:]
    try:
        arr = np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise CubeError(f"{path}: not a numeric CSV ({exc})") from None
    return header, arr


def _package_srf(name: str) -> Any:
    return resources.files("napari_cofusion").joinpath("data", "srf", name)


def _curves_from_table(name: str, header: list[str] | None, arr: np.ndarray, note: str = "") -> SRF:
    wl = arr[:, 0]
    if np.nanmax(wl) < 30:  # micrometres
        wl = wl * 1000.0
    names = header[1:] if header else [f"band{i + 1}" for i in range(arr.shape[1] - 1)]
    return SRF(name=name, band_names=list(names), curves=arr[:, 1:].T, wavelengths=wl, note=note)


def _pyrsr_srf(name: str, satellite: str, sensor: str, bands: list[str]) -> SRF:
    try:
        from pyrsr import RSR
    except ImportError as exc:  # pragma: no cover - pyrsr is a dependency
        raise CubeError(f"SRF preset '{name}' needs the pyrsr package ({exc})") from None
    r = RSR(satellite, sensor)
    curves = np.stack([np.asarray(r.rsrs[b], dtype=np.float64) for b in bands])
    return SRF(
        name=name, band_names=[f"B{b}" for b in bands], curves=curves,
        wavelengths=np.asarray(r.rsrs_wvl, dtype=np.float64), note=f"pyrsr {satellite} {sensor}",
    )


def _preset(name: str) -> SRF:
    if name == "nikon-d700":
        header, arr = _read_csv_rows(_package_srf("nikon_d700.csv"))
        # A matrix at the 31 CAVE bands (rows already sum to 1); also usable as curves.
        return SRF(name=name, band_names=list(header[1:]) if header else ["R", "G", "B"], matrix=arr[:, 1:].T,
                   curves=arr[:, 1:].T, wavelengths=arr[:, 0], note="Nikon D700 (CAVE protocol)")
    if name == "ikonos":
        header, arr = _read_csv_rows(_package_srf("ikonos.csv"))
        srf = _curves_from_table(name, header, arr, "IKONOS relative spectral responses")
        keep = [i for i, n in enumerate(srf.band_names) if n != "PAN"]
        srf.curves = srf.curves[keep]  # type: ignore[index]
        srf.band_names = [srf.band_names[i] for i in keep]
        return srf
    if name == "rosis-ikonos4":
        _, arr = _read_csv_rows(_package_srf("rosis_to_ikonos4.csv"))
        return SRF(name=name, band_names=["B", "G", "R", "NIR"], matrix=arr, note="ROSIS→IKONOS 4-band (PaviaU)")
    if name == "landsat8-oli":
        return _pyrsr_srf(name, "Landsat-8", "OLI_TIRS", ["1", "2", "3", "4", "5", "6", "7"])
    if name == "sentinel2":
        return _pyrsr_srf(name, "Sentinel-2A", "MSI", ["2", "3", "4", "5", "6", "7", "8", "8A", "11", "12"])
    raise KeyError(name)


def srf_presets() -> list[str]:
    return ["nikon-d700", "ikonos", "rosis-ikonos4", "landsat8-oli", "sentinel2"]


def load_srf_file(path: str | os.PathLike, key: str | None = None) -> SRF:
    """A user's SRF: CSV (wavelength column + one column per band, or a plain c×C matrix),
    ``.npy`` (c×C matrix) or ``.mat`` (matrix, or N×(1+c) table with a wavelength column)."""
    p = Path(path)
    if not p.is_file():
        raise CubeError(f"{p}: SRF file not found")
    suf = p.suffix.lower()
    if suf in (".csv", ".txt"):
        header, arr = _read_csv_rows(p)
        if arr.ndim != 2 or arr.size == 0:
            raise CubeError(f"{p}: empty SRF table")
        if header and header[0].strip().lower().startswith("wave"):
            return _curves_from_table(p.stem, header, arr)
        return SRF(name=p.stem, band_names=[f"band{i + 1}" for i in range(arr.shape[0])], matrix=arr)
    if suf == ".npy":
        arr = np.load(p, allow_pickle=False)
    elif suf == ".mat":
        import scipy.io

        try:
            d = {k: v for k, v in scipy.io.loadmat(p).items() if not k.startswith("__")}
        except Exception as exc:
            raise CubeError(f"{p}: not a readable MATLAB file ({exc})") from None
        if key is None:
            mats = [k for k, v in d.items() if isinstance(v, np.ndarray) and v.ndim == 2 and v.dtype.kind in "iuf"]
            if not mats:
                raise CubeError(f"{p}: no 2-D numeric matrix for an SRF")
            key = mats[0]
        if key not in d:
            raise CubeError(f"{p}: no array named {key!r}")
        arr = d[key]
    else:
        raise CubeError(f"{p}: unsupported SRF file type {suf}; use .csv, .npy or .mat")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2:
        raise CubeError(f"{p}: SRF must be a 2-D matrix, got shape {arr.shape}")
    if arr.shape[0] > arr.shape[1]:
        arr = arr.T  # bands-as-columns given; we want (c, C)
    return SRF(name=p.stem, band_names=[f"band{i + 1}" for i in range(arr.shape[0])], matrix=arr)


def get_srf(spec: str | SRF | np.ndarray) -> SRF:
    """An SRF from a preset name, a file path, an (c, C) array or an SRF."""
    if isinstance(spec, SRF):
        return spec
    if isinstance(spec, dict):  # as stored in a recipe
        if "name" not in spec:
            raise CubeError(f"SRF description {spec!r} has no name")
        return get_srf(spec["name"])
    if isinstance(spec, np.ndarray):
        if spec.ndim != 2:
            raise CubeError(f"SRF matrix must be 2-D (c, C), got shape {spec.shape}")
        return SRF(name="matrix", band_names=[f"band{i + 1}" for i in range(spec.shape[0])], matrix=spec)
    try:
        return _preset(str(spec).lower())
    except KeyError:
        pass
    if Path(spec).suffix:
        return load_srf_file(spec)
    raise CubeError(f"unknown SRF {spec!r}: use one of {', '.join(srf_presets())} or a .csv/.npy/.mat file")
