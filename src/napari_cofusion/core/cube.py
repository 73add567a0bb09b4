"""The one cube type the whole plugin passes around.

A :class:`Cube` is band-first ``(C, H, W)`` float32 data scaled to [0, 1], with optional
wavelengths in nanometres, the factor the raw values were divided by, a name and the
source it came from. It has no Qt or napari dependency; ``to_layer_data`` /
``from_layer_data`` are the bridge the napari adapters use.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from napari_cofusion.core.errors import CubeError

__all__ = ["Cube", "check_cube_array", "normalise_wavelengths_nm"]


def check_cube_array(data: Any, what: str = "cube") -> np.ndarray:
    """Return ``data`` as a finite float32 ``(C, H, W)`` array or raise :class:`CubeError`."""
    arr = np.asarray(data)
    if arr.dtype.kind not in "biuf":
        raise CubeError(f"{what}: expected numeric data, got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise CubeError(
            f"{what}: expected a 3-D cube (bands, rows, columns), got {arr.ndim}-D data of shape {arr.shape}"
        )
    if 0 in arr.shape:
        raise CubeError(f"{what}: empty cube of shape {arr.shape}")
    arr = arr.astype(np.float32, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(bad.sum()) - n_nan
        raise CubeError(
            f"{what}: contains {n_nan} NaN and {n_inf} Inf values; fill or mask them before fusion"
        )
    return arr


def normalise_wavelengths_nm(wl: Any, n_bands: int | None = None, units: str | None = None) -> np.ndarray | None:
    """Wavelengths as float64 nanometres, converting from micrometres when the units say so
    (or, without units, when every value is below 30, which no band centre in nm is)."""
    if wl is None:
        return None
    w = np.asarray(wl, dtype=np.float64).ravel()
    if w.size == 0:
        return None
    if n_bands is not None and w.size != n_bands:
        raise CubeError(f"{w.size} wavelengths given for {n_bands} bands")
    u = (units or "").strip().lower()
    if u in {"micrometers", "micrometres", "micrometer", "um", "µm", "microns", "micron"}:
        w = w * 1000.0
    elif u in {"", "unknown"} and np.nanmax(w) < 30:
        w = w * 1000.0
    return w


@dataclass
class Cube:
    """A hyperspectral or multispectral cube.

    Attributes
    ----------
    data : (C, H, W) float32, values in [0, 1]
    wavelengths : (C,) float64 band centres in nm, or None when unknown
    norm_scale : the factor raw sensor values were divided by to reach [0, 1]
    name : short name used for layers and files
    source : where it came from (a path, or a description such as "simulated")
    meta : anything else worth keeping (fwhm, recipe, ...), JSON-friendly
    """

    data: np.ndarray
    wavelengths: np.ndarray | None = None
    norm_scale: float = 1.0
    name: str = "cube"
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = check_cube_array(self.data, self.name)
        self.wavelengths = normalise_wavelengths_nm(self.wavelengths, self.data.shape[0])

    @property
    def bands(self) -> int:
        return int(self.data.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def spatial_shape(self) -> tuple[int, int]:
        return int(self.data.shape[1]), int(self.data.shape[2])

    def with_data(self, data: np.ndarray, **changes: Any) -> "Cube":
        """A copy holding new data (same band axis meaning) and any changed fields."""
        return replace(self, data=data, **changes)

    # ------------------------------------------------------------ napari bridge
    def layer_metadata(self) -> dict:
        md = {
            "wavelengths": None if self.wavelengths is None else [float(w) for w in self.wavelengths],
            "norm_scale": float(self.norm_scale),
            "source": self.source,
            "napari_cofusion": True,
        }
        md.update({k: v for k, v in self.meta.items() if k not in md})
        return md

    def to_layer_data(self) -> tuple[np.ndarray, dict, str]:
        """A napari LayerDataTuple. ``rgb=False`` always: a 3- or 4-band cube is not an RGB image."""
        kwargs = {"name": self.name, "rgb": False, "metadata": self.layer_metadata()}
        return self.data, kwargs, "image"

    @classmethod
    def from_layer_data(cls, data: Any, metadata: dict | None = None, name: str = "layer") -> "Cube":
        md = dict(metadata or {})
        wl = md.pop("wavelengths", None)
        norm = float(md.pop("norm_scale", 1.0) or 1.0)
        source = str(md.pop("source", ""))
        md.pop("napari_cofusion", None)
        return cls(np.asarray(data), wavelengths=wl, norm_scale=norm, name=name, source=source, meta=md)
