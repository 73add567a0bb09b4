"""Display helpers for cubes: which bands make a colour composite, and the percentile stretch.

No Qt or napari dependency: the pseudo-colour dock widget only calls these.

* :func:`default_rgb_bands`: true colour (the bands nearest 640 / 550 / 460 nm) when the
  wavelengths cover 450–650 nm, else the bands at 3/4, 1/2 and 1/4 of the band range (ranked by
  wavelength when the wavelengths are known, so the longest wavelength goes to red; by index
  otherwise).
* :func:`percentile_stretch`: one band to [0, 1] between its low and high percentiles.
* :func:`composite`: three bands of a (C, H, W) cube stretched channel by channel into an
  (H, W, 3) float32 RGB image in [0, 1].
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError

__all__ = [
    "TRUE_COLOUR_NM", "TRUE_COLOUR_COVERAGE_NM", "nearest_band", "covers_true_colour",
    "default_rgb_bands", "check_bands", "percentile_stretch", "composite", "true_colour_bands", "VISIBLE_NM",
    "percentile_limits", "band_label",
]

#: Band centres (nm) used for red, green and blue in a true-colour composite.
TRUE_COLOUR_NM = (640.0, 550.0, 460.0)
#: The wavelength interval a cube must span for a true-colour default.
TRUE_COLOUR_COVERAGE_NM = (450.0, 650.0)
#: Band centres inside this interval (nm) count as visible colours for :func:`true_colour_bands`.
VISIBLE_NM = (380.0, 720.0)


def _wavelengths(wavelengths: Any, n_bands: int) -> np.ndarray | None:
    if wavelengths is None:
        return None
    w = np.asarray(wavelengths, dtype=np.float64).ravel()
    if w.size != n_bands or not np.isfinite(w).all():
        return None
    return w


def nearest_band(wavelengths: Any, nm: float) -> int:
    """Index of the band whose centre is nearest ``nm`` (the first one on a tie)."""
    w = np.asarray(wavelengths, dtype=np.float64).ravel()
    if w.size == 0:
        raise CubeError("no wavelengths to choose a band from")
    return int(np.argmin(np.abs(w - float(nm))))


def covers_true_colour(wavelengths: Any) -> bool:
    """True when the band centres span at least 450–650 nm."""
    if wavelengths is None:
        return False
    w = np.asarray(wavelengths, dtype=np.float64).ravel()
    if w.size < 3 or not np.isfinite(w).all():
        return False
    lo, hi = TRUE_COLOUR_COVERAGE_NM
    return bool(w.min() <= lo and w.max() >= hi)


def default_rgb_bands(n_bands: int, wavelengths: Any = None) -> tuple[int, int, int]:
    """(red, green, blue) band indices for a first look at a cube of ``n_bands`` bands."""
    n = int(n_bands)
    if n < 1:
        raise CubeError(f"a cube needs at least one band, got {n_bands}")
    w = _wavelengths(wavelengths, n)
    if w is not None and covers_true_colour(w):
        return tuple(nearest_band(w, nm) for nm in TRUE_COLOUR_NM)  # type: ignore[return-value]
    # bands ranked from shortest to longest wavelength (or by index when unknown)
    order = np.argsort(w, kind="stable") if w is not None else np.arange(n)
    pick = [min(int(np.floor(f * n)), n - 1) for f in (0.75, 0.5, 0.25)]
    return tuple(int(order[i]) for i in pick)  # type: ignore[return-value]


def check_bands(bands: Sequence[int], n_bands: int) -> tuple[int, int, int]:
    """Three valid band indices, or a :class:`CubeError` naming the one out of range."""
    if len(bands) != 3:
        raise CubeError(f"a colour composite needs three bands (R, G, B), got {len(bands)}")
    out = []
    for name, b in zip("RGB", bands):
        i = int(b)
        if not 0 <= i < n_bands:
            raise CubeError(f"{name} band {i} is outside the cube's {n_bands} bands (0–{n_bands - 1})")
        out.append(i)
    return tuple(out)  # type: ignore[return-value]


def percentile_stretch(band: Any, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """A 2-D band linearly mapped to [0, 1] between its ``low`` and ``high`` percentiles
    (NaN ignored, values beyond clipped); a flat band maps to 0. float32."""
    b = np.asarray(band, dtype=np.float32)
    if b.ndim != 2:
        raise CubeError(f"a band to stretch must be 2-D, got shape {b.shape}")
    if not 0.0 <= low < high <= 100.0:
        raise CubeError(f"percentiles must satisfy 0 <= low < high <= 100, got {low} and {high}")
    finite = b[np.isfinite(b)]
    if finite.size == 0:
        return np.zeros(b.shape, np.float32)
    lo, hi = np.percentile(finite, [low, high])
    if not hi > lo:
        return np.zeros(b.shape, np.float32)
    out = (b - np.float32(lo)) / np.float32(hi - lo)
    return np.nan_to_num(np.clip(out, 0.0, 1.0), nan=0.0).astype(np.float32, copy=False)


def composite(cube: Any, bands: Sequence[int], low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Bands (R, G, B) of a (C, H, W) cube, each percentile-stretched, as (H, W, 3) float32 in [0, 1]."""
    data = cube.data if isinstance(cube, Cube) else cube
    if not hasattr(data, "shape") or not hasattr(data, "__getitem__"):
        data = np.asarray(data)  # lazy arrays (dask, zarr) stay lazy: only three bands are read
    if len(data.shape) != 3:
        raise CubeError(f"a colour composite needs a (bands, rows, columns) cube, got shape {data.shape}")
    r, g, b = check_bands(bands, data.shape[0])
    return np.stack([percentile_stretch(data[i], low, high) for i in (r, g, b)], axis=-1)


def true_colour_bands(n_bands: int, wavelengths: Any = None) -> tuple[int, int, int] | None:
    """(red, green, blue) bands that show a multispectral image (3 or 4 bands: RGB, RGB+NIR) in
    true colour, when the band centres are known: of the bands inside the visible (380–720 nm),
    the three there are from the longest wavelength to the shortest, or with four the ones nearest
    640 / 550 / 460 nm (when they differ); None otherwise (wavelengths unknown, a hyperspectral
    cube, fewer than three visible bands)."""
    n = int(n_bands)
    w = _wavelengths(wavelengths, n)
    if w is None or not 3 <= n <= 4:
        return None
    lo, hi = VISIBLE_NM
    visible = [i for i in range(n) if lo <= w[i] <= hi]
    if len(visible) == 3:
        r, g, b = sorted(visible, key=lambda i: -w[i])
    elif len(visible) == 4:
        r, g, b = (nearest_band(w, nm) for nm in TRUE_COLOUR_NM)
    else:
        return None
    if not w[r] > w[g] > w[b]:
        return None
    return int(r), int(g), int(b)


def percentile_limits(data: Any, low: float = 1.0, high: float = 99.0, max_samples: int = 1_000_000
                      ) -> tuple[float, float]:
    """Contrast limits of a cube or image: its ``low`` and ``high`` percentiles (NaN ignored),
    on a regular subsample of at most about ``max_samples`` values (lazy arrays are read only
    there); a flat or empty image gets (v, v + 1e-6), never an empty range."""
    shape = tuple(int(n) for n in getattr(data, "shape", np.shape(data)))
    if len(shape) >= 2:
        lead = ()
        if len(shape) == 3 and not isinstance(data, np.ndarray) and shape[0] > 3:
            # a lazy cube (dask over zarr, one band per chunk): three bands, not a read of every band
            bstep = -(-shape[0] // 3)
            lead = (slice(None, None, bstep),)
            shape = (len(range(0, shape[0], bstep)),) + shape[1:]
        n = int(np.prod(shape))
        step = max(1, int(np.ceil(np.sqrt(n / max(1, max_samples)))))
        sample = np.asarray(data[(*lead, Ellipsis, slice(None, None, step), slice(None, None, step))],
                            dtype=np.float64)
    else:
        sample = np.asarray(data, dtype=np.float64)
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, [low, high]))
    if not hi > lo:
        hi = lo + 1e-6
    return lo, hi


def band_label(index: int, wavelengths: Any = None) -> str:
    """The band slider's label for band ``index``: ``"λ 550 nm"`` where the band centre is known,
    else ``"band 5"``."""
    i = int(index)
    w = None if wavelengths is None else np.asarray(wavelengths, dtype=np.float64).ravel()
    if w is not None and 0 <= i < w.size and np.isfinite(w[i]):
        return f"λ {w[i]:.4g} nm"
    return f"band {i}"
