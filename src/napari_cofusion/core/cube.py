"""The one cube type the whole plugin passes around.

A :class:`Cube` is band-first ``(C, H, W)`` float32 data scaled to [0, 1], with optional
wavelengths in nanometres, the factor the raw values were divided by, a name and the
source it came from. It has no Qt or napari dependency; ``to_layer_data`` /
``from_layer_data`` are the bridge the napari adapters use.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from napari_cofusion.core.errors import CofusionWarning, CubeError

__all__ = ["Cube", "check_cube_array", "normalise", "normalise_wavelengths_nm", "MAX_CLIPPED_FRACTION"]


def check_cube_array(data: Any, what: str = "cube") -> np.ndarray:
    """Return ``data`` as a finite float32 ``(C, H, W)`` array or raise :class:`CubeError`."""
    arr = np.asarray(data)
    if arr.dtype.kind not in "biuf":
        raise CubeError(f"{what}: expected numeric data, got dtype {arr.dtype}")
    if arr.dtype.kind in "iu":
        raise CubeError(f"{what}: integer data ({arr.dtype}) is raw sensor values, and a cube holds values scaled to "
                        "[0, 1]: use Cube.from_raw(data), which divides by the type's full range")
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


#: more than this fraction of values outside [0, 1] after scaling is refused, not clipped: the
#: scale is wrong (e.g. a bad ``reflectance scale factor``) or the data is not intensities
MAX_CLIPPED_FRACTION = 0.5


def normalise(
    data: np.ndarray, norm: str | float = "auto", file_scale: float | None = None, what: str = "cube",
    scale_source: str = "",
) -> tuple[np.ndarray, float, int]:
    """Scale raw values to float32 [0, 1]; return (data, factor used, number of clipped values).

    Values below 0 or above the full scale are clipped with a :class:`CofusionWarning` that
    gives the counts; when more than half the values would be clipped the scale is wrong and a
    :class:`CubeError` says so (``scale_source`` names where the factor came from)."""
    raw = np.asarray(data)
    if raw.dtype.kind not in "biuf":
        raise CubeError(f"{what}: expected numeric data, got dtype {raw.dtype}")
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        n_nan = int(np.isnan(raw).sum())
        n_inf = int((~np.isfinite(raw)).sum()) - n_nan
        raise CubeError(f"{what}: contains {n_nan} NaN and {n_inf} Inf values")
    if file_scale is not None and not (math.isfinite(file_scale) and file_scale > 0):
        raise CubeError(f"{what}: scale factor {file_scale} ({scale_source or 'from the file'}) is not a positive finite number")
    if isinstance(norm, str):
        if norm == "auto":
            if file_scale:
                factor = float(file_scale)
            elif raw.dtype.kind in "iu":
                factor = float(np.iinfo(raw.dtype).max)
            elif raw.dtype.kind == "b":
                factor = 1.0
            else:
                mx = float(raw.max()) if raw.size else 1.0
                factor = 1.0 if mx <= 1.0 else mx
        elif norm == "max":
            mx = float(raw.max()) if raw.size else 1.0
            factor = mx if mx > 0 else 1.0
        else:
            raise CubeError(f"{what}: unknown normalisation {norm!r} (use 'auto', 'max' or a number)")
    else:
        factor = float(norm)
        if not (math.isfinite(factor) and factor > 0):
            raise CubeError(f"{what}: normalisation factor must be a positive finite number, got {norm}")
    out = raw.astype(np.float32) / np.float32(factor)
    n_low, n_high = int((out < 0).sum()), int((out > 1).sum())
    n_clip = n_low + n_high
    if n_clip:
        frac = n_clip / out.size
        where = f" after dividing by {factor:g}" + (f" ({scale_source})" if scale_source else "")
        if frac > MAX_CLIPPED_FRACTION:
            raise CubeError(
                f"{what}: {100 * frac:.0f}% of the values fall outside [0, 1]{where} ({n_low} below 0, {n_high} "
                "above 1): the scale is wrong or the data is not intensities; give the normalisation factor explicitly"
            )
        warnings.warn(CofusionWarning(
            f"{what}: {n_low} values below 0 set to 0 and {n_high} above full scale set to 1{where} "
            f"({100 * frac:.2g}% of the cube)"), stacklevel=2)
        np.clip(out, 0.0, 1.0, out=out)
    return out, factor, n_clip


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
        return layer_metadata(self.wavelengths, self.norm_scale, self.source, self.meta)

    def to_layer_data(self) -> tuple[np.ndarray, dict, str]:
        """A napari LayerDataTuple. ``rgb=False`` always: a 3- or 4-band cube is not an RGB image."""
        kwargs = {"name": self.name, "rgb": False, "metadata": self.layer_metadata()}
        return self.data, kwargs, "image"

    @classmethod
    def from_raw(cls, raw: Any, norm: "str | float" = "auto", **fields: Any) -> "Cube":
        """A cube from raw sensor values (any numeric dtype), scaled to [0, 1] by :func:`normalise`;
        ``fields`` are the other attributes (``wavelengths``, ``name``, ...)."""
        what = fields.get("name", "cube")
        data, factor, n_clip = normalise(np.asarray(raw), norm, what=what)
        meta = dict(fields.pop("meta", {}) or {})
        if n_clip:
            meta["clipped"] = n_clip
        return cls(data, norm_scale=factor, meta=meta, **fields)

    @classmethod
    def from_layer_data(cls, data: Any, metadata: dict | None = None, name: str = "layer") -> "Cube":
        """A cube from a napari layer's data and metadata; integer layers (opened by another
        reader) are scaled to [0, 1] by their type's full range."""
        md = dict(metadata or {})
        wl = md.pop("wavelengths", None)
        norm = float(md.pop("norm_scale", 1.0) or 1.0)
        source = str(md.pop("source", ""))
        md.pop("napari_cofusion", None)
        arr = np.asarray(data)
        if arr.dtype.kind in "iu":
            return cls.from_raw(arr, wavelengths=wl, name=name, source=source, meta=md)
        return cls(arr, wavelengths=wl, norm_scale=norm, name=name, source=source, meta=md)


def layer_metadata(wavelengths: Any, norm_scale: float, source: str, meta: dict) -> dict:
    """A cube layer's napari metadata: wavelengths (nm), norm scale, source, the plugin's mark,
    then the cube's other metadata (a cube's, or a lazily opened store's)."""
    md = {
        "wavelengths": None if wavelengths is None else [float(w) for w in wavelengths],
        "norm_scale": float(norm_scale),
        "source": source,
        "napari_cofusion": True,
    }
    md.update({k: v for k, v in (meta or {}).items() if k not in md})
    return md
