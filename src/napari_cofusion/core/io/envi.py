"""ENVI images: ``.hdr`` header plus a raw data file (read through ``spectral``; written as
BSQ float32 with the wavelengths in the header)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError
from napari_cofusion.core.io.common import check_file, make_cube, new_files

__all__ = ["read_envi", "write_envi", "EnviSink", "ENVI_DATA_EXTS", "has_envi_header", "roughness"]

ENVI_DATA_EXTS = (".img", ".dat", ".raw", ".bsq", ".bil", ".bip", "")


def has_envi_header(p: Path) -> bool:
    """Whether a data file has an ENVI header beside it."""
    return p.with_suffix(".hdr").exists() or Path(str(p) + ".hdr").exists()


def roughness(cube: np.ndarray) -> float:
    """How much a cube looks like noise: the mean absolute difference of adjacent pixels (the
    larger of rows and columns) over the standard deviation, on up to 8 bands and a central
    256×256 window. About 0.02–0.3 for images, 1.13 for white noise, which is what a wrong byte
    order or interleave makes of them."""
    c, h, w = cube.shape
    y0, x0 = max(0, (h - 256) // 2), max(0, (w - 256) // 2)
    sub = np.asarray(cube[np.linspace(0, c - 1, min(c, 8)).astype(int), y0:y0 + 256, x0:x0 + 256], dtype=np.float64)
    sd = float(sub.std())
    if sd == 0 or min(sub.shape[1:]) < 2:
        return 0.0
    return max(float(np.abs(np.diff(sub, axis=a)).mean()) for a in (-1, -2)) / sd


def _check_layout(raw: np.ndarray, data_file: Path, hdr: Path, offset: int, interleave: str, byte_order: str) -> None:
    """Refuse integer data that reads as noise while another byte order or interleave reads as an
    image (three times smoother): the header describes the file wrongly. (Float data read with a
    wrong byte order is caught by the NaN and range checks; a BIL file read as BSQ keeps its
    rows intact and cannot be told from an image.)"""
    if raw.dtype.kind not in "iu":
        return
    c, h, w = raw.shape
    r0 = roughness(raw)
    if r0 < 0.15 or h * w < 16:
        return
    base = np.dtype(raw.dtype).newbyteorder("=")

    def as_order(bo: str) -> np.ndarray:
        dt = base if base.itemsize == 1 else base.newbyteorder("<" if bo == "0" else ">")
        return np.memmap(data_file, dtype=dt, mode="r", offset=offset, shape=(c * h * w,))

    shapes = {"bsq": lambda a: a.reshape(c, h, w), "bil": lambda a: a.reshape(h, c, w).transpose(1, 0, 2),
              "bip": lambda a: a.reshape(h, w, c).transpose(2, 0, 1)}
    orders = [byte_order] + ([("1" if byte_order == "0" else "0")] if base.itemsize > 1 else [])
    alternatives = [(roughness(shape(as_order(bo))), bo, il) for bo in orders for il, shape in shapes.items()
                    if (bo, il) != (byte_order, interleave)]
    r, bo, il = min(alternatives)
    if r < r0 / 3:
        fix = [f"'byte order' = {bo}"] if bo != byte_order else []
        fix += [f"'interleave' = {il}"] if il != interleave else []
        raise CubeError(
            f"{data_file}: reads as noise with the header's 'interleave' = {interleave} and 'byte order' = "
            f"{byte_order or '(none)'}, but as an image with {' and '.join(fix)}: fix the header {hdr.name}"
        )


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
    try:
        offset = int(h.get("header offset", 0) or 0)
    except ValueError:
        raise CubeError(f"{hdr}: bad ENVI header value 'header offset' = {h.get('header offset')!r}") from None
    interleave = str(h.get("interleave", "bsq")).strip().lower()
    if interleave not in ("bsq", "bil", "bip"):
        raise CubeError(f"{hdr}: 'interleave' = {interleave!r}; ENVI knows bsq, bil and bip")
    byte_order = str(h.get("byte order", "")).strip()
    if dtype.itemsize > 1 and byte_order not in ("0", "1"):
        raise CubeError(f"{hdr}: 'byte order' must be 0 (little-endian) or 1 (big-endian) for {dtype} data, "
                        f"got {byte_order or '(missing)'}")
    scale = h.get("reflectance scale factor")
    if scale in (None, ""):
        scale = None
    else:
        try:
            scale = float(scale)
        except (TypeError, ValueError):
            raise CubeError(f"{hdr}: 'reflectance scale factor' = {scale!r} is not a number") from None
        if not (np.isfinite(scale) and scale > 0):
            raise CubeError(f"{hdr}: 'reflectance scale factor' = {scale} is not a positive finite number")
    expected = offset + n_s * n_l * n_b * dtype.itemsize
    actual = data_file.stat().st_size
    if actual != expected:
        what = "truncated" if actual < expected else "larger than its header says"
        raise CubeError(
            f"{data_file}: {what}: {actual} bytes, the header describes {expected} "
            f"({n_b} bands × {n_l} lines × {n_s} samples of {dtype}, header offset {offset}); check 'samples', "
            "'lines', 'bands', 'data type' and 'header offset'"
        )
    try:
        img = envi.open(str(hdr), str(data_file))
        raw = np.asarray(img.load(dtype=img.dtype, scale=False))  # raw DN: the scale factor is applied once, below
    except Exception as exc:
        raise CubeError(f"{data_file}: could not read ENVI data ({exc})") from None
    raw = np.moveaxis(np.asarray(raw), 2, 0)  # spectral gives (rows, cols, bands)
    _check_layout(raw, data_file, hdr, offset, interleave, byte_order)
    wl = h.get("wavelength")
    wl = [float(w) for w in wl] if wl else None
    meta: dict = {"format": "envi"}
    if h.get("fwhm"):
        try:
            meta["fwhm"] = [float(v) for v in h["fwhm"]]
        except ValueError:
            pass
    return make_cube(raw, data_file, hdr.stem, wl, h.get("wavelength units"), norm, scale, meta,
                     scale_source="the header's 'reflectance scale factor'" if scale else "")


#: the byte order the project writes float32 ENVI data in (the machine's own)
_F4 = "<f4" if np.little_endian else ">f4"


def _header_text(name: str, shape: tuple[int, int, int], norm_scale: float, wavelengths=None, fwhm=None) -> str:
    """The header of a BSQ float32 cube as the project writes it (``write_envi`` and ``EnviSink``)."""
    c, h, w = shape
    lines = ["ENVI", f"description = {{{name} written by napari-cofusion}}", f"samples = {w}", f"lines = {h}",
             f"bands = {c}", "header offset = 0", "file type = ENVI Standard", "data type = 4", "interleave = bsq",
             f"byte order = {0 if np.little_endian else 1}", f"norm scale = {float(norm_scale)}"]
    if wavelengths is not None:
        lines.append("wavelength units = Nanometers")
        lines.append("wavelength = {" + ", ".join(f"{x:.10g}" for x in wavelengths) + "}")
    if fwhm is not None and len(fwhm) == c:
        lines.append("fwhm = {" + ", ".join(f"{float(x):.10g}" for x in fwhm) + "}")
    return "\n".join(lines) + "\n"


def write_envi(cube: Cube, data: np.ndarray, hdr: Path, overwrite: bool) -> list[str]:
    img = hdr.with_suffix(".img")
    text = _header_text(cube.name, data.shape, cube.norm_scale, cube.wavelengths, cube.meta.get("fwhm"))
    with new_files([img, hdr], overwrite) as (tmp_img, tmp_hdr):
        np.ascontiguousarray(data, dtype=_F4).tofile(tmp_img)
        tmp_hdr.write_text(text)
    return [str(hdr), str(img)]


def _pwrite_region(fd: int, shape: tuple[int, int, int], y0: int, x0: int, data: np.ndarray) -> None:
    """Write a (C, h, w) region at (y0, x0) of a BSQ float32 file of ``shape`` with positioned writes."""
    C, H, W = shape
    le = np.ascontiguousarray(data, dtype=_F4)
    h, w = le.shape[-2:]
    full_rows = x0 == 0 and w == W
    for b in range(C):
        base = (b * H + y0) * W + x0
        if full_rows:
            os.pwrite(fd, le[b].tobytes(), base * 4)
            continue
        for r in range(h):
            os.pwrite(fd, le[b, r].tobytes(), (base + r * W) * 4)


class EnviRegionWriter:
    """``writer[:, y0:y1, x0:x1] = block`` into an existing BSQ float32 file (opened per write, so
    that it pickles and works from dask worker processes on the same file system)."""

    def __init__(self, path: str, shape: tuple[int, int, int]) -> None:
        self.path, self.shape = path, tuple(int(v) for v in shape)

    def __setitem__(self, key: tuple, value: np.ndarray) -> None:
        ys, xs = key[-2], key[-1]
        fd = os.open(self.path, os.O_WRONLY)
        try:
            _pwrite_region(fd, self.shape, ys.start or 0, xs.start or 0, np.asarray(value))
        finally:
            os.close(fd)


class EnviSink:
    """An ENVI BSQ float32 file written block by block (``fuse(..., out=PATH)``): the data goes
    straight to a hidden temporary file beside the target with positioned writes (nothing of it is
    kept in memory), and on :meth:`close` the header is written and both files take their names
    (exclusively unless ``overwrite``). :meth:`abort` (or an error) removes the temporaries."""

    def __init__(self, path: "str | os.PathLike", bands: int, H: int, W: int, overwrite: bool = False) -> None:
        hdr = Path(path)
        if hdr.suffix.lower() not in (".hdr", ".img"):
            raise CubeError(f"{hdr}: block-wise output is written as ENVI; name it NAME.hdr")
        self.hdr, self.img = hdr.with_suffix(".hdr"), hdr.with_suffix(".img")
        self.shape = (int(bands), int(H), int(W))
        self._files = new_files([self.img, self.hdr], overwrite)
        self._tmp_img, self._tmp_hdr = self._files.__enter__()
        self._fd = os.open(self._tmp_img, os.O_WRONLY)
        os.ftruncate(self._fd, bands * H * W * 4)
        self._open = True

    def write(self, block, data: np.ndarray) -> None:
        _pwrite_region(self._fd, self.shape, block.y0, block.x0, data)

    def target(self) -> "EnviRegionWriter":
        """A small picklable writer into the temporary data file (dask's ``store`` on workers)."""
        return EnviRegionWriter(str(self._tmp_img), self.shape)

    def close(self, name: str, wavelengths=None, norm_scale: float = 1.0, meta=None) -> list[str]:
        os.close(self._fd)
        self._open = False
        self._tmp_hdr.write_text(_header_text(name, self.shape, norm_scale, wavelengths))
        self._files.__exit__(None, None, None)
        return [str(self.hdr), str(self.img)]

    def abort(self) -> None:
        if self._open:
            os.close(self._fd)
            self._open = False
        exc = CubeError("aborted")
        self._files.__exit__(CubeError, exc, None)  # new_files removes the temporaries
