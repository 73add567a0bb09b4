"""ENVI images: ``.hdr`` header plus a raw data file (read through ``spectral``; written as
BSQ float32 with the wavelengths in the header)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError
from napari_cofusion.core.io.common import check_file, check_target, make_cube, temp_beside

__all__ = ["read_envi", "write_envi", "ENVI_DATA_EXTS", "has_envi_header"]

ENVI_DATA_EXTS = (".img", ".dat", ".raw", ".bsq", ".bil", ".bip", "")


def has_envi_header(p: Path) -> bool:
    """Whether a data file has an ENVI header beside it."""
    return p.with_suffix(".hdr").exists() or Path(str(p) + ".hdr").exists()


def _envi_header_path(path: Path) -> Path:
    if path.suffix.lower() == ".hdr":
        return path
    for cand in (path.with_suffix(".hdr"), Path(str(path) + ".hdr")):
        if cand.exists():
            return cand
    raise CubeError(f"{path}: no ENVI header (.hdr) found next to it")


def _envi_data_path(hdr: Path, hdr_meta: dict) -> Path:
    base = hdr.with_suffix("")
    for ext in ENVI_DATA_EXTS:
        for cand in (Path(str(base) + ext), Path(str(base) + ext.upper())):
            if cand.exists() and cand.is_file() and cand != hdr:
                return cand
    raise CubeError(f"{hdr}: ENVI header found but no data file beside it (tried {', '.join(e or '(none)' for e in ENVI_DATA_EXTS)})")


def read_envi(path: str | os.PathLike, norm: str | float = "auto") -> Cube:
    """An ENVI image (``.hdr`` plus data file) through ``spectral``; wavelengths, units, fwhm
    and ``reflectance scale factor`` come from the header (keys are case-insensitive)."""
    import spectral.io.envi as envi

    path = Path(path)
    check_file(path)
    hdr = _envi_header_path(path)
    check_file(hdr)
    try:
        h = {k.strip().lower(): v for k, v in envi.read_envi_header(str(hdr)).items()}
    except Exception as exc:  # spectral raises several types for malformed headers
        raise CubeError(f"{hdr}: not a readable ENVI header ({exc})") from None
    for key in ("samples", "lines", "bands", "data type"):
        if key not in h:
            raise CubeError(f"{hdr}: ENVI header lacks the required key '{key}'")
    data_file = _envi_data_path(hdr, h)
    try:
        n_s, n_l, n_b = int(h["samples"]), int(h["lines"]), int(h["bands"])
        dtype = np.dtype(envi.envi_to_dtype[str(h["data type"]).strip()])
    except (KeyError, ValueError) as exc:
        raise CubeError(f"{hdr}: bad ENVI header value ({exc})") from None
    offset = int(h.get("header offset", 0) or 0)
    expected = offset + n_s * n_l * n_b * dtype.itemsize
    actual = data_file.stat().st_size
    if actual < expected:
        raise CubeError(
            f"{data_file}: truncated ENVI data file: {actual} bytes, the header describes {expected} "
            f"({n_b} bands × {n_l} lines × {n_s} samples of {dtype})"
        )
    try:
        img = envi.open(str(hdr), str(data_file))
        raw = np.asarray(img.load(dtype=img.dtype, scale=False))  # raw DN: the scale factor is applied once, below
    except Exception as exc:
        raise CubeError(f"{data_file}: could not read ENVI data ({exc})") from None
    raw = np.moveaxis(np.asarray(raw), 2, 0)  # spectral gives (rows, cols, bands)
    scale = h.get("reflectance scale factor")
    try:
        scale = float(scale) if scale not in (None, "") else None
    except ValueError:
        scale = None
    wl = h.get("wavelength")
    wl = [float(w) for w in wl] if wl else None
    meta: dict = {"format": "envi"}
    if h.get("fwhm"):
        try:
            meta["fwhm"] = [float(v) for v in h["fwhm"]]
        except ValueError:
            pass
    return make_cube(raw, data_file, hdr.stem, wl, h.get("wavelength units"), norm, scale or None, meta)


def write_envi(cube: Cube, data: np.ndarray, hdr: Path, overwrite: bool) -> list[str]:
    img = hdr.with_suffix(".img")
    check_target(hdr, overwrite)
    check_target(img, overwrite)
    c, h, w = data.shape
    lines = [
        "ENVI",
        f"description = {{{cube.name} written by napari-cofusion}}",
        f"samples = {w}",
        f"lines = {h}",
        f"bands = {c}",
        "header offset = 0",
        "file type = ENVI Standard",
        "data type = 4",
        "interleave = bsq",
        f"byte order = {0 if np.little_endian else 1}",
        f"norm scale = {float(cube.norm_scale)}",
    ]
    if cube.wavelengths is not None:
        lines.append("wavelength units = Nanometers")
        lines.append("wavelength = {" + ", ".join(f"{x:.10g}" for x in cube.wavelengths) + "}")
    if "fwhm" in cube.meta and len(cube.meta["fwhm"]) == c:
        lines.append("fwhm = {" + ", ".join(f"{float(x):.10g}" for x in cube.meta["fwhm"]) + "}")
    tmp_img, tmp_hdr = temp_beside(img, ".img"), temp_beside(hdr, ".hdr")
    try:
        np.ascontiguousarray(data, dtype="<f4" if np.little_endian else ">f4").tofile(tmp_img)
        tmp_hdr.write_text("\n".join(lines) + "\n")
        os.replace(tmp_img, img)
        os.replace(tmp_hdr, hdr)
    finally:
        tmp_img.unlink(missing_ok=True)
        tmp_hdr.unlink(missing_ok=True)
    return [str(hdr), str(img)]
