"""Spectra at a pixel: which pixel of which cube belongs to a location on the high-resolution
grid, the spectra themselves, and their CSV export. No Qt or napari dependency.

Several cubes of one scene are shown together: the HR cubes (reference, fused result, HRMSI)
share the high-resolution grid of H×W pixels, the LRHSI has h×w pixels with H = s·h. A location
(row, col) on the HR grid is sampled at that pixel in every HR-size cube and at
``(row·h // H, col·w // W)`` in a smaller one: the LR pixel whose footprint holds it (the
integer division by the size ratio). A cube placed in the viewer's world frame (a napari layer
scale and translate) is mapped through a per-axis affine instead (:func:`grid_affine`).

Regions of interest (ROIs) are boolean masks on the HR grid, mapped to each cube's grid
(:func:`mask_on_grid`: a cube pixel is in the ROI when the centre of at least one ROI pixel of
the HR grid lies in it) and summarised per band by :func:`roi_stats` (mean, population standard
deviation, pixel count).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from napari_cofusion.core.errors import CubeError

__all__ = ["Spectrum", "CSV_COLUMNS", "MS_MAX_BANDS", "hr_shape", "map_pixel", "pixel_from_coords", "sample_spectrum",
           "sample_spectra", "csv_rows", "write_csv", "grid_affine", "map_pixel_affine", "mask_on_grid", "polygon_mask",
           "ellipse_polygon", "roi_stats", "roi_spectrum", "difference", "fwhm_from_curves", "band_fwhm",
           "library_groups", "write_library", "is_multispectral", "difference_curves", "is_reference"]

#: Columns of the long-format CSV export, one row per (curve, band). ``row``/``col`` are the
#: pixel of that cube (empty for an ROI), ``std`` and ``n_pixels`` describe an ROI mean (std
#: empty and n_pixels 1 for a pixel), ``kind`` is pixel, roi or difference, ``label`` the legend text.
CSV_COLUMNS = ("layer", "row", "col", "pinned", "wavelength_nm", "value", "std", "n_pixels", "kind", "label")

#: Cubes with at most this many bands are multispectral: drawn as points at the band centres.
MS_MAX_BANDS = 16


@dataclass
class Spectrum:
    """One curve: ``values[b]`` of cube ``layer`` at pixel (``row``, ``col``) of that cube."""

    layer: str
    row: int
    col: int
    values: np.ndarray
    wavelengths: np.ndarray | None = None
    pinned: bool = False
    lr: bool = False  #: sampled on a coarser grid than the HR one: (row, col) is its own (LR) pixel
    std: np.ndarray | None = None  #: per-band standard deviation of an ROI mean
    n_pixels: int = 1
    kind: str = "pixel"  #: "pixel", "roi" or "difference"
    roi: str = ""  #: the ROI's name (kind "roi")
    fwhm: np.ndarray | None = None  #: band widths in nm (full width at half maximum), where known

    @property
    def label(self) -> str:
        if self.kind == "roi":
            return f"{self.layer} · {self.roi} mean ± std ({self.n_pixels} px{' LR' if self.lr else ''})"
        if self.kind == "difference":
            return f"{self.layer} · {self.roi} mean" if self.roi else f"{self.layer} ({self.row}, {self.col})"
        if self.lr:
            return f"{self.layer} (LR px {self.row}, {self.col})"
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


def sample_spectra(cubes: Sequence[tuple], row: int, col: int,
                   hr: Sequence[int] | None = None, notes: list[str] | None = None) -> list[Spectrum]:
    """Spectra of every ``(name, data, wavelengths)`` or ``(name, data, wavelengths, affine)``
    cube at HR location (row, col).

    ``hr`` is the HR grid's (H, W) (default: the largest cube's). A cube with an ``affine`` (see
    :func:`grid_affine`) is sampled at the pixel that affine maps (row, col) to; otherwise
    HR-size cubes are sampled at (row, col), smaller ones at the LR pixel holding it
    (:func:`map_pixel`). Curves of cubes smaller than the grid are marked ``lr``. With a
    ``notes`` list, a cube whose pixels do not reach that place (e.g. an LRHSI shifted by its
    phase, at the far edge) is left out and said so in ``notes`` instead of raising CubeError.
    """
    if not cubes:
        return []
    grid = tuple(hr[-2:]) if hr is not None else hr_shape([np.shape(c[1]) for c in cubes])
    out = []
    for cube in cubes:
        name, data, wl = cube[:3]
        affine = cube[3] if len(cube) > 3 else None
        shape = np.shape(data)
        try:
            if affine is None:
                r, c = map_pixel(row, col, grid, shape)
            else:
                r, c = map_pixel_affine(row, col, affine, shape, name)
        except CubeError as exc:
            if notes is None:
                raise
            notes.append(str(exc))
            continue
        sp = sample_spectrum(name, data, r, c, wl)
        sp.lr = tuple(int(v) for v in shape[-2:]) != tuple(int(v) for v in grid)
        out.append(sp)
    return out


def _cell(v: Any) -> Any:
    return "" if v is None else v


def csv_rows(spectra: Iterable[Spectrum]) -> list[dict[str, Any]]:
    """Long format: one row per curve and band, with the columns of :data:`CSV_COLUMNS`
    (``wavelength_nm`` empty where the wavelengths are unknown)."""
    rows = []
    for s in spectra:
        roi = s.kind == "roi"
        for b, v in enumerate(s.values):
            rows.append({
                "layer": s.layer, "row": "" if roi else s.row, "col": "" if roi else s.col, "pinned": bool(s.pinned),
                "wavelength_nm": "" if s.wavelengths is None else float(s.wavelengths[b]),
                "value": float(v), "std": "" if s.std is None else float(s.std[b]), "n_pixels": int(s.n_pixels),
                "kind": s.kind, "label": s.label,
            })
    return rows


def write_csv(spectra: Iterable[Spectrum], path: "str | os.PathLike") -> Path:
    """Write the curves as CSV (:func:`csv_rows`) with the project's safe writer (exclusive and
    atomic: never overwrites an existing file, never leaves half a file)."""
    from napari_cofusion.core.io.common import new_files

    p = Path(path)
    rows = csv_rows(spectra)
    if not rows:
        raise CubeError("no spectra to export: click on the image first")
    if p.exists():
        raise CubeError(f"{p}: already exists; choose another file name")
    if not p.parent.is_dir():
        raise CubeError(f"{p.parent}: folder not found")
    try:
        with new_files([p]) as (tmp,):
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS))
                writer.writeheader()
                writer.writerows(rows)  # floats as repr: they read back exactly
    except OSError as exc:
        raise CubeError(f"{p}: could not write the CSV ({exc.strerror or exc})") from None
    return p


# ------------------------------------------------------------------------------- grids
Affine = tuple[tuple[float, float], tuple[float, float]]  # ((row factor, col factor), (row offset, col offset))


def grid_affine(hr_shape: Sequence[int], shape: Sequence[int], hr_scale: Sequence[float] | None = None,
                hr_translate: Sequence[float] | None = None, scale: Sequence[float] | None = None,
                translate: Sequence[float] | None = None) -> Affine:
    """The per-axis affine taking continuous data coordinates of the HR grid (pixel centres at
    integers) to those of a cube of spatial size ``shape[-2:]``: ``x = factor·X + offset``.

    With the two layers' world scale and translate (last two axes), the cube is *placed* when
    its scale relative to the HR grid matches the size ratio (``s/S = H/h`` within 1 %), or it
    has the HR size: then ``factor = S/s`` and ``offset = (T - t)/s``. Otherwise (e.g. an LRHSI
    shown at scale 1 beside its HRMSI) footprints are assumed aligned to the top-left corner:
    ``factor = h/H`` and ``offset = (h/H - 1)/2``, which puts every HR pixel in the LR pixel
    ``row·h // H`` as :func:`map_pixel` does."""
    H, W = float(hr_shape[-2]), float(hr_shape[-1])
    h, w = float(shape[-2]), float(shape[-1])
    S = np.ones(2) if hr_scale is None else np.asarray(hr_scale, float)[-2:]
    T = np.zeros(2) if hr_translate is None else np.asarray(hr_translate, float)[-2:]
    s_ = np.ones(2) if scale is None else np.asarray(scale, float)[-2:]
    t_ = np.zeros(2) if translate is None else np.asarray(translate, float)[-2:]
    ratio = np.array([H / h, W / w])
    placed = np.allclose(s_ / S, ratio, rtol=0.01) or (h, w) == (H, W)
    if placed:
        f, o = S / s_, (T - t_) / s_
    else:
        f = 1.0 / ratio
        o = (f - 1.0) / 2.0
    return (float(f[0]), float(f[1])), (float(o[0]), float(o[1]))


def _map_axis(idx: np.ndarray, factor: float, offset: float) -> np.ndarray:
    """Nearest pixel of the mapped coordinates; a centre on a boundary goes to the upper pixel, so
    an LR layer placed at scale ``s`` and translate ``s // 2`` (the protocol's phase) takes the HR
    pixels ``s·i … s·i + s - 1``, as the integer division of :func:`map_pixel` does."""
    return np.floor(np.asarray(idx, float) * factor + offset + 0.5).astype(np.int64)


def map_pixel_affine(row: int, col: int, affine: Affine, shape: Sequence[int], name: str = "cube") -> tuple[int, int]:
    """The pixel of a cube of spatial size ``shape[-2:]`` holding the centre of HR pixel (row, col)."""
    (fr, fc), (orow, ocol) = affine
    r, c = int(_map_axis(np.array([row]), fr, orow)[0]), int(_map_axis(np.array([col]), fc, ocol)[0])
    if not (0 <= r < int(shape[-2]) and 0 <= c < int(shape[-1])):
        raise CubeError(f"{name}: the clicked place is outside its {shape[-2]}×{shape[-1]} pixels")
    return r, c


def mask_on_grid(mask: np.ndarray, shape: Sequence[int], affine: Affine | None = None) -> np.ndarray:
    """An HR-grid ROI mask (H, W) on a cube's grid of spatial size ``shape[-2:]``: a cube pixel is
    in the ROI when the centre of at least one ROI pixel maps into it (``affine`` from
    :func:`grid_affine`; None: the same grid)."""
    m = np.asarray(mask, bool)
    h, w = int(shape[-2]), int(shape[-1])
    if affine is None:
        if m.shape != (h, w):
            raise CubeError(f"ROI mask of {m.shape[0]}×{m.shape[1]} pixels on a {h}×{w} grid needs an affine")
        return m.copy()
    (fr, fc), (orow, ocol) = affine
    rows, cols = np.nonzero(m)
    r, c = _map_axis(rows, fr, orow), _map_axis(cols, fc, ocol)
    ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    out = np.zeros((h, w), bool)
    out[r[ok], c[ok]] = True
    return out


def polygon_mask(vertices: Any, shape: Sequence[int]) -> np.ndarray:
    """Pixels of an (H, W) grid whose centres (at integer coordinates) lie inside the polygon
    with (row, col) ``vertices`` (even-odd rule; a rectangle is its 4 corners)."""
    v = np.asarray(vertices, float)[:, -2:]
    H, W = int(shape[-2]), int(shape[-1])
    out = np.zeros((H, W), bool)
    if len(v) < 3:
        return out
    r0, c0 = max(int(np.floor(v[:, 0].min())), 0), max(int(np.floor(v[:, 1].min())), 0)
    r1, c1 = min(int(np.ceil(v[:, 0].max())), H - 1), min(int(np.ceil(v[:, 1].max())), W - 1)
    if r1 < r0 or c1 < c0:
        return out
    rr, cc = np.mgrid[r0:r1 + 1, c0:c1 + 1].astype(float)
    inside = np.zeros(rr.shape, bool)
    for (ya, xa), (yb, xb) in zip(v, np.roll(v, -1, axis=0)):
        if ya == yb:
            continue
        crosses = (ya > rr) != (yb > rr)
        x_at = xa + (rr - ya) * (xb - xa) / (yb - ya)
        inside ^= crosses & (cc < x_at)
    out[r0:r1 + 1, c0:c1 + 1] = inside
    return out


def ellipse_polygon(corners: Any, n: int = 64) -> np.ndarray:
    """A polygon of ``n`` (row, col) vertices approximating the ellipse inscribed in the
    axis-aligned box of ``corners`` (napari keeps an ellipse as its bounding box)."""
    v = np.asarray(corners, float)[:, -2:]
    centre, half = v.mean(axis=0), (v.max(axis=0) - v.min(axis=0)) / 2
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([centre[0] + half[0] * np.sin(t), centre[1] + half[1] * np.cos(t)], axis=1)


def roi_stats(data: Any, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-band mean and population standard deviation (ddof 0) of a (C, H, W) cube over the
    pixels of an (H, W) mask, and the number of pixels; raises CubeError for an empty mask."""
    m = np.asarray(mask, bool)
    shape = tuple(int(s) for s in np.shape(data))
    if len(shape) != 3 or shape[1:] != m.shape:
        raise CubeError(f"ROI mask {m.shape} does not match the cube's {shape[1:]} pixels")
    rows, cols = np.nonzero(m)
    if rows.size == 0:
        raise CubeError("the ROI holds no pixel of this cube")
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    block = np.asarray(data[:, r0:r1, c0:c1], dtype=np.float64)[:, m[r0:r1, c0:c1]]
    return block.mean(axis=1), block.std(axis=1), int(rows.size)


def roi_spectrum(name: str, data: Any, mask_hr: np.ndarray, roi: str, wavelengths: Any = None,
                 affine: Affine | None = None, lr: bool = False) -> Spectrum:
    """Mean ± std spectrum of a cube over an HR-grid ROI mapped to its grid (:func:`mask_on_grid`)."""
    m = mask_on_grid(mask_hr, np.shape(data), affine)
    try:
        mean, std, n = roi_stats(data, m)
    except CubeError as exc:
        raise CubeError(f"{name}: {exc}") from None
    return Spectrum(layer=name, row=-1, col=-1, values=mean, wavelengths=_wl(wavelengths, mean.size), lr=lr,
                    std=std, n_pixels=n, kind="roi", roi=roi)


def difference(a: Spectrum, b: Spectrum, what: str) -> Spectrum:
    """``a − b`` band by band (same band count), named ``"<a> − <what>"`` at a's pixel."""
    if a.values.size != b.values.size:
        raise CubeError(f"{a.layer} ({a.values.size} bands) and {b.layer} ({b.values.size} bands) cannot be subtracted")
    return Spectrum(layer=f"{a.layer} − {what}", row=a.row, col=a.col, values=a.values - b.values,
                    wavelengths=a.wavelengths, pinned=a.pinned, kind="difference", n_pixels=a.n_pixels, roi=a.roi)


_REF = re.compile(r"(reference|\bref\b|\bgt\b|ground.truth)", re.I)


def is_reference(name: str) -> bool:
    """Whether a layer name names a reference (ground truth): "reference", "ref", "gt", "ground truth"."""
    return bool(_REF.search(name))


def difference_curves(groups: Iterable[Sequence[Spectrum]], against: str) -> tuple[list[Spectrum], list[str]]:
    """Differences within each group of curves (a pixel set, or one ROI's means), and notes.

    ``against="reference"``: every HR hyperspectral curve minus the reference's (:func:`is_reference`);
    ``against="LR"``: every HR hyperspectral curve but the reference's minus the LR curve (the
    LR pixel holding that place: the LR image upsampled by nearest neighbour), same band count.
    Multispectral curves (the HRMSI) are left out."""
    out, notes = [], []
    for g in groups:
        hs = [s for s in g if not s.lr and not is_multispectral(s)]
        if against == "reference":
            refs = [s for s in hs if is_reference(s.layer)]
            if not refs:
                notes.append("no reference layer (a name with 'reference')")
                continue
            base, minus = refs[0], [s for s in hs if s is not refs[0]]
        else:
            lrs = [s for s in g if s.lr and not is_multispectral(s)]
            if not lrs:
                notes.append("no LR layer (a cube smaller than the grid)")
                continue
            base = lrs[0]
            minus = [s for s in hs if s.values.size == base.values.size and not is_reference(s.layer)]
        for s in minus:
            try:
                out.append(difference(s, base, against))
            except CubeError as exc:
                notes.append(str(exc))
    return out, sorted(set(notes))


def is_multispectral(s: Spectrum) -> bool:
    return s.values.size <= MS_MAX_BANDS and s.kind != "difference"


# ------------------------------------------------------------------------------- band widths
def fwhm_from_curves(curves: Any, wavelengths: Any) -> np.ndarray:
    """Full width at half maximum (nm) of each response curve on ``wavelengths`` (linear
    interpolation of the outermost half-maximum crossings)."""
    wl = np.asarray(wavelengths, float)
    out = []
    for c in np.atleast_2d(np.asarray(curves, float)):
        half = c.max() / 2.0
        idx = np.nonzero(c >= half)[0]
        if c.max() <= 0 or idx.size == 0:
            out.append(np.nan)
            continue
        i, j = idx[0], idx[-1]
        lo = wl[i] if i == 0 else np.interp(half, [c[i - 1], c[i]], [wl[i - 1], wl[i]])
        hi = wl[j] if j == len(c) - 1 else np.interp(half, [c[j + 1], c[j]], [wl[j + 1], wl[j]])
        out.append(float(hi - lo))
    return np.asarray(out)


def band_fwhm(metadata: dict, n_bands: int) -> np.ndarray | None:
    """Band widths (nm) of a cube, where known: ``metadata["fwhm"]`` (ENVI), else the FWHM of the
    response curves of the SRF named in its recipe (bands kept by the recipe); else None."""
    fw = metadata.get("fwhm")
    if fw is not None and len(fw) == n_bands:
        return np.asarray(fw, float)
    srf = ((metadata.get("recipe") or {}).get("srf") or {}) if isinstance(metadata.get("recipe"), dict) else {}
    name = srf.get("name") if isinstance(srf, dict) else None
    if not name:
        return None
    try:
        from napari_cofusion.core.srf import get_srf

        obj = get_srf(str(name))
        if obj.curves is None or obj.wavelengths is None:
            return None
        keep = [i for i, b in enumerate(obj.band_names) if b in (srf.get("band_names") or obj.band_names)]
        widths = fwhm_from_curves(np.asarray(obj.curves)[keep], obj.wavelengths)
    except (CubeError, OSError, ValueError, KeyError, IndexError):
        return None
    return widths if widths.size == n_bands and np.isfinite(widths).all() else None


# ------------------------------------------------------------------------------- spectral library
def library_groups(spectra: Iterable[Spectrum]) -> list[tuple[np.ndarray | None, list[Spectrum]]]:
    """Curves grouped by wavelength axis (one spectral library holds one), largest group first."""
    groups: list[tuple[np.ndarray | None, list[Spectrum]]] = []
    for s in spectra:
        key = s.wavelengths if s.wavelengths is not None else None
        for wl, members in groups:
            same = (wl is None and key is None and members[0].values.size == s.values.size) or (
                wl is not None and key is not None and wl.shape == key.shape and np.array_equal(wl, key))
            if same:
                members.append(s)
                break
        else:
            groups.append((key, [s]))
    return sorted(groups, key=lambda g: -g[1][0].values.size)


def write_library(spectra: Iterable[Spectrum], path: "str | os.PathLike") -> list[str]:
    """Write the curves as ENVI spectral libraries (``.sli`` + ``.hdr``, float64, names = legend
    labels, ROI means without their std): the curves of the largest band set to ``path``, every
    other band set (e.g. the 3 HRMSI bands) to ``<path>_<n>bands[_k]``. All files are written
    as one (all or nothing), never overwriting. Returns every path written."""
    from napari_cofusion.core.io.common import check_target
    from napari_cofusion.core.io.sli import sli_paths, write_sli

    groups = library_groups(spectra)
    if not groups:
        raise CubeError("no spectra to export: click on the image first")
    base = sli_paths(path)[0].with_suffix("")
    targets, seen = [], set()
    for i, (wl, members) in enumerate(groups):
        n = members[0].values.size
        name = str(base) if i == 0 else f"{base}_{n}bands"
        k = 2
        while name in seen:
            name, k = f"{base}_{n}bands_{k}", k + 1
        seen.add(name)
        targets.append((Path(name), wl, members))
    for p, _, _ in targets:
        for f in sli_paths(p):
            check_target(f, False)  # refuse before writing anything
    written: list[str] = []
    try:
        for p, wl, members in targets:
            written += write_sli(np.stack([m.values for m in members]), [m.label for m in members], p, wl)
    except BaseException:
        for f in written:
            Path(f).unlink(missing_ok=True)
        raise
    return written
