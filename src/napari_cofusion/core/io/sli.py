"""ENVI spectral libraries: a ``.sli`` file of spectra (one per line, ``samples`` = bands) and its
``.hdr`` header with ``spectra names`` and ``wavelength``; written through the safe writer
(:func:`~napari_cofusion.core.io.common.new_files`: exclusive, atomic, both files or neither).

The data are little-endian (``byte order = 0``) float64 (``data type = 5``) by default, so the
float64 spectra of :mod:`napari_cofusion.core.spectra` read back exactly; ``dtype="float32"``
writes ``data type = 4``. Wavelengths are written with ``repr`` (exact round trip). ENVI header
lists are comma-separated inside braces, so commas and braces in a spectrum's name are replaced
(``,`` → ``;``, ``{`` → ``(``, ``}`` → ``)``): a pixel curve "fused (41, 57)" is named "fused (41; 57)".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from napari_cofusion.core.errors import CubeError
from napari_cofusion.core.io.common import new_files

__all__ = ["write_sli", "sli_name", "sli_paths"]


def sli_name(name: str) -> str:
    """A spectrum name that survives an ENVI header list."""
    return " ".join(str(name).replace(",", ";").replace("{", "(").replace("}", ")").split())


def sli_paths(path: "str | os.PathLike") -> tuple[Path, Path]:
    """(data ``.sli``, header ``.hdr``) for ``path`` (either of them, or a name without suffix)."""
    p = Path(path)
    if p.suffix.lower() in (".sli", ".hdr"):
        p = p.with_suffix("")
    return Path(str(p) + ".sli"), Path(str(p) + ".hdr")


def write_sli(spectra: "np.ndarray | Sequence[Sequence[float]]", names: Sequence[str],
              path: "str | os.PathLike", wavelengths: "Sequence[float] | None" = None,
              dtype: str = "float64", description: str = "napari-cofusion spectra",
              overwrite: bool = False) -> list[str]:
    """Write an (n spectra, n bands) array as an ENVI spectral library; returns ``[sli, hdr]``."""
    arr = np.asarray(spectra, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise CubeError(f"a spectral library needs an (n spectra, n bands) array, got shape {arr.shape}")
    if len(names) != arr.shape[0]:
        raise CubeError(f"{len(names)} names for {arr.shape[0]} spectra")
    code = {"float32": "4", "float64": "5"}.get(np.dtype(dtype).name)
    if code is None:
        raise CubeError(f"spectral library data type must be float32 or float64, not {dtype}")
    wl = None if wavelengths is None else np.asarray(wavelengths, dtype=np.float64).ravel()
    if wl is not None and wl.size != arr.shape[1]:
        raise CubeError(f"{wl.size} wavelengths for {arr.shape[1]} bands")
    sli, hdr = sli_paths(path)
    lines = [
        "ENVI",
        "description = {" + sli_name(description) + "}",
        f"samples = {arr.shape[1]}",
        f"lines = {arr.shape[0]}",
        "bands = 1",
        "header offset = 0",
        "file type = ENVI Spectral Library",
        f"data type = {code}",
        "interleave = bsq",
        "byte order = 0",
    ]
    if wl is not None:
        lines += ["wavelength units = Nanometers", "wavelength = {" + ", ".join(repr(float(w)) for w in wl) + "}"]
    lines.append("spectra names = {" + ", ".join(sli_name(n) for n in names) + "}")
    raw = arr.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
    with new_files([sli, hdr], overwrite) as (tmp_sli, tmp_hdr):
        tmp_sli.write_bytes(raw)
        tmp_hdr.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [str(sli), str(hdr)]
