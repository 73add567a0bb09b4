"""CAVE-style folders of one PNG per band (``<scene>_NN.png``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError
from napari_cofusion.core.io.common import make_cube

__all__ = ["read_png_folder", "png_bands"]


_BAND_RE = re.compile(r"_(\d+)\.png$", re.IGNORECASE)


def png_bands(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() == ".png" and _BAND_RE.search(p.name)]
    return sorted(files, key=lambda p: int(_BAND_RE.search(p.name).group(1)))  # type: ignore[union-attr]


def read_png_folder(path: str | os.PathLike, norm: str | float = "auto") -> Cube:
    """A CAVE-style folder with one PNG per band (``<scene>_NN.png``, band NN at
    400 + 10·(NN−1) nm when there are 31). 16-bit greyscale is divided by 65535; the 8-bit
    RGBA files one CAVE scene ships are read as their first channel and divided by 255."""
    import imageio.v3 as iio

    folder = Path(path)
    if not folder.is_dir():
        raise CubeError(f"{folder}: not a folder")
    files = png_bands(folder)
    if not files:
        raise CubeError(f"{folder}: no band PNGs named like <scene>_01.png")
    bands = []
    for f in files:
        try:
            im = np.asarray(iio.imread(f))
        except Exception as exc:
            raise CubeError(f"{f}: not a readable PNG ({exc})") from None
        if im.ndim == 3:  # 8-bit RGBA/RGB quirk: grey value repeated in the colour channels
            im = im[..., 0]
        bands.append(im)
    shapes = {b.shape for b in bands}
    if len(shapes) != 1:
        raise CubeError(f"{folder}: band images differ in size: {sorted(shapes)}")
    dtypes = {b.dtype for b in bands}
    raw = np.stack(bands).astype(max(dtypes, key=lambda d: d.itemsize))
    if len(dtypes) > 1:  # mixed 8/16 bit: bring 8-bit bands to the 16-bit range
        raw = np.stack([b.astype(np.uint16) * 257 if b.dtype == np.uint8 else b for b in bands])
    idx = np.array([int(_BAND_RE.search(f.name).group(1)) for f in files])  # type: ignore[union-attr]
    wl = 400.0 + 10.0 * (idx - 1) if len(files) == 31 else None
    name = folder.name[:-3] if folder.name.endswith("_ms") else folder.name
    return make_cube(raw, folder, name, wl, "nm", norm, None, {"format": "png-folder"})
