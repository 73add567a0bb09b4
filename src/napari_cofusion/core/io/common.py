"""Shared by the format modules: band-axis detection, normalisation to [0, 1], the Cube they
build, and safe output (a new file written through a temporary one beside it)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from napari_cofusion.core.cube import Cube, check_cube_array, normalise, normalise_wavelengths_nm
from napari_cofusion.core.errors import CubeError

__all__ = ["CAVE_WAVELENGTHS", "WL_KEYS", "check_file", "to_band_first", "normalise", "make_cube", "find_wavelengths",
           "cube_candidates", "describe_arrays", "check_target", "temp_beside", "new_files", "clean_partials", "write_json",
           "json_safe", "json_text"]

CAVE_WAVELENGTHS = np.arange(400.0, 701.0, 10.0)
WL_KEYS = ("wavelength", "wavelengths", "wavelength_nm", "wl", "wave", "lambda", "bands_nm", "centers")


def check_file(path: Path) -> None:
    if not path.exists():
        raise CubeError(f"{path}: no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise CubeError(f"{path}: file is empty")


def to_band_first(
    arr: np.ndarray,
    band_axis: int | None = None,
    n_wavelengths: int | None = None,
    what: str = "array",
) -> np.ndarray:
    """Move the band axis of a 3-D array to the front.

    The band axis is ``band_axis`` when given; else the axis whose length equals the number of
    wavelengths (when exactly one does); else the first or the last axis, whichever leaves the
    other two closest to square (images are rarely long thin strips; ties go to the smaller
    axis, then band-last). The smallest axis is a poor guess: PaviaU is 50×50×103.
    """
    a = np.asarray(arr)
    if a.ndim != 3:
        raise CubeError(f"{what}: expected a 3-D cube, got {a.ndim}-D data of shape {a.shape}")
    if band_axis is None:
        if n_wavelengths is not None:
            matches = [i for i, s in enumerate(a.shape) if s == n_wavelengths]
            if len(matches) == 1:
                band_axis = matches[0]
        if band_axis is None:
            def aspect(i: int) -> float:
                r, c = (s for j, s in enumerate(a.shape) if j != i)
                return max(r, c) / min(r, c)

            band_axis = min((0, 2), key=lambda i: (aspect(i), a.shape[i], -i))
    if not -3 <= band_axis < 3:
        raise CubeError(f"{what}: band_axis {band_axis} is out of range for a 3-D array")
    return np.moveaxis(a, band_axis, 0)


def make_cube(
    raw: np.ndarray,
    path: Path,
    name: str,
    wavelengths: Any = None,
    wl_units: str | None = None,
    norm: str | float = "auto",
    file_scale: float | None = None,
    meta: dict | None = None,
    scale_source: str = "",
) -> Cube:
    data, factor, n_clip = normalise(raw, norm, file_scale, what=str(path), scale_source=scale_source)
    data = check_cube_array(data, str(path))
    try:
        wl = normalise_wavelengths_nm(wavelengths, data.shape[0], wl_units)
    except CubeError as exc:
        raise CubeError(f"{path}: {exc}") from None
    m = dict(meta or {})
    if n_clip:
        m["clipped"] = n_clip
    m.setdefault("raw_dtype", str(raw.dtype))
    return Cube(data, wavelengths=wl, norm_scale=factor, name=name, source=str(path), meta=m)


def find_wavelengths(arrays: dict[str, np.ndarray], n_candidates: Iterable[int]) -> np.ndarray | None:
    cands = set(n_candidates)
    for k, v in arrays.items():
        if k.lower().split("/")[-1] in WL_KEYS:
            flat = np.asarray(v, dtype=np.float64).ravel()
            if flat.size in cands:
                return flat
    return None


def cube_candidates(arrays: dict[str, np.ndarray]) -> list[str]:
    """3-D arrays, largest first; ties go to the one with more bands (the larger smallest axis)."""
    keys = [k for k, v in arrays.items() if v.ndim == 3 and min(v.shape) > 0]
    return sorted(keys, key=lambda k: (arrays[k].size, min(arrays[k].shape)), reverse=True)


def describe_arrays(arrays: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{k} {'×'.join(map(str, v.shape))}" for k, v in arrays.items()) or "none"


def check_target(path: Path, overwrite: bool) -> None:
    """Refuse, before any work, an output that exists (unless ``overwrite``) or a folder that is
    missing or not writable."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise CubeError(f"{path}: already exists; choose another name (or allow overwriting)")
    if path.is_dir():
        raise CubeError(f"{path}: is a folder, not a file name")
    if not path.parent.is_dir():
        raise CubeError(f"{path.parent}: folder does not exist")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise CubeError(f"{path.parent}: folder is not writable")


PARTIAL = ".partial"


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` would, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_partials(folder: Path) -> list[Path]:
    """Remove the temporary files of writers that died (killed) in ``folder``: hidden
    ``.NAME.PID.XXXX.partial`` files whose process is gone. Returns what was removed."""
    removed = []
    try:
        entries = list(Path(folder).glob(f".*{PARTIAL}"))
    except OSError:
        return removed
    for q in entries:
        parts = q.name.split(".")
        try:
            pid = int(parts[-3])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            try:
                q.unlink()
                removed.append(q)
            except OSError:
                pass
    return removed


def temp_beside(path: Path, suffix: str = "") -> Path:
    """A new hidden temporary file beside ``path`` named ``.NAME.PID.XXXX.partial``, so that one
    left by a killed writer is recognised and removed by the next write (:func:`clean_partials`)."""
    clean_partials(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=PARTIAL, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _finalise(tmp: Path, path: Path, overwrite: bool) -> None:
    """Give ``tmp`` the umask's permissions and move it to ``path``: atomically replacing it when
    ``overwrite``, else only if no file of that name appeared meanwhile (exclusive)."""
    os.chmod(tmp, 0o666 & ~_umask())
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if path exists: two writers never share a name
    except FileExistsError:
        raise CubeError(f"{path}: was created by someone else while this was being written; nothing replaced") from None
    except OSError:  # no hard links on this file system: exclusive create, then replace
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        os.replace(tmp, path)
    else:
        tmp.unlink()


@contextmanager
def new_files(paths: "Sequence[Path]", overwrite: bool = False) -> Iterator[list[Path]]:
    """Write several files as one: yields temporary paths to fill; on success each is moved to its
    name (exclusively unless ``overwrite``), on any error (or Ctrl-C) all temporaries are removed
    and the files already moved in are taken back out, so no half-written output is left."""
    paths = [Path(p) for p in paths]
    for p in paths:
        check_target(p, overwrite)
    tmps = [temp_beside(p) for p in paths]
    done: list[Path] = []
    try:
        yield tmps
        for t, p in zip(tmps, paths):
            _finalise(t, p, overwrite)
            done.append(p)
    except BaseException:
        if not overwrite:
            for p in done:
                p.unlink(missing_ok=True)
        raise
    finally:
        for t in tmps:
            t.unlink(missing_ok=True)


def write_json(obj: Any, path: str | os.PathLike, overwrite: bool = False) -> str:
    """Atomic, non-overwriting JSON writer for recipes and cards."""
    path = Path(path)
    text = json_text(obj) + "\n"
    with new_files([path], overwrite) as (tmp,):
        tmp.write_text(text)
    return str(path)


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    return obj


def json_text(obj: Any, fallback: Callable[[Any], Any] | None = None) -> str:
    """``obj`` as indented JSON that is JSON: NaN and infinities as null (:func:`json_safe`), numpy
    values as lists and numbers, paths as strings; anything else goes to ``fallback`` (an error
    without one). The one encoder of recipes, cards and the CLI's ``--json``."""
    def default(o: Any) -> Any:
        if isinstance(o, np.ndarray):
            return json_safe(o.tolist())
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, Path):
            return str(o)
        if fallback is not None:
            return fallback(o)
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    return json.dumps(json_safe(obj), indent=2, default=default, allow_nan=False)
