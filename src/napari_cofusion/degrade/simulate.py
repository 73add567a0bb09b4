"""Wald's-protocol simulation of an LRHSI / HRMSI pair from a reference cube, exactly as
``shared/PROTOCOL.md`` defines it.

* H and W are cropped (top-left anchored) to multiples of the scale ``s``.
* LRHSI = decimate(PSF * X): band-wise 2-D convolution with reflect padding, then keep
  ``[:, s//2::s, s//2::s]``.
* The ``dhif-x4`` / ``dhif-x8`` protocols (the DHIF-Net / SFNO line): an s×s separable Gaussian
  (sigma 2) whose sample covers the block ``s·i … s·i + s - 1``, kept at ``s//2 - 1``: LR sample
  ``i`` is centred at HR coordinate ``s·i + (s - 1)/2``, between HR pixels. The kernel is stored
  as the odd :func:`~napari_cofusion.core.ops.half_pixel_kernel` (zero last row and column), so
  every degradation in the project is one odd-kernel convolution and a whole-pixel phase;
  :func:`~napari_cofusion.core.ops.sample_centre` gives the half pixel to whatever places
  samples (bicubic upsampling, the consistency step's corrections, napari's LR layers). The
  PROTOCOL's circular boundaries change nothing here: with H and W multiples of s no block
  crosses the border (the test compares with an FFT implementation).
* HRMSI = R · X with the SRF matrix R (rows sum to 1).
* Optional Gaussian noise by SNR (dB): band b gets σ_b = sqrt(mean(Y_b²) / 10^(SNR/10)).

Every pair carries a :class:`Recipe` (JSON) that reproduces it.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_cofusion.core import ops
from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError
from napari_cofusion.core.srf import SRF, get_srf

__all__ = ["PSF", "reduced_pair", "default_phase", "dhif_kernel", "half_gaussian_kernel", "Recipe", "SimulatedPair", "simulate_pair", "PROTOCOLS", "protocol_recipe", "add_noise", "infer_scale",
           "save_pair", "read_pair"]


@dataclass
class PSF:
    """A point-spread function preset or custom kernel.

    kind: ``"weak"`` (3×3, σ 0.5), ``"wald"`` (FWHM = scale), ``"dhif"`` (the s×s Gaussian of the
    ``dhif`` protocols, ``sigma`` default 2, centred between HR pixels), ``"gaussian"`` (``size``, ``sigma``),
    ``"box"`` (``size``, default the scale), ``"file"`` (a 2-D kernel in ``path``: .npy/.csv/.mat)
    or ``"array"`` (``kernel`` given directly). ``half`` (Gaussian only): centred half an HR pixel
    after the pixel the decimation keeps, an even ``size`` (default ``2·ceil(3σ + 1/2)``) stored
    as :func:`~napari_cofusion.core.ops.half_pixel_kernel`: samples between HR pixels, as the
    estimator finds for pairs made that way (``gaussian-half:SIGMA``).
    """

    kind: str = "weak"
    size: int | None = None
    sigma: float | None = None
    path: str | None = None
    kernel_values: list | None = None
    half: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str):
            raise CubeError(f"PSF kind must be a name, got {self.kind!r}")
        if self.size is not None and (isinstance(self.size, bool) or not isinstance(self.size, int)
                                      or not 1 <= self.size <= 255):
            raise CubeError(f"PSF size {self.size!r} must be a whole number of pixels from 1 to 255")
        if self.sigma is not None and not (isinstance(self.sigma, (int, float)) and math.isfinite(self.sigma)
                                           and 0 < self.sigma <= 64):
            raise CubeError(f"PSF sigma {self.sigma!r} must be a positive number of pixels (at most 64)")
        if self.half is not None and not isinstance(self.half, bool):
            raise CubeError(f"PSF half {self.half!r} must be true or false")
        if self.half and (self.kind.lower() != "gaussian" or (self.size is not None and self.size % 2)):
            raise CubeError("a half-pixel PSF (half: true) is a Gaussian with an even size")

    def kernel(self, scale: int) -> np.ndarray:
        k = self.kind.lower()
        if k == "weak":
            return ops.gaussian_kernel(3, 0.5)
        if k == "wald":
            sigma = ops.gaussian_sigma_wald(scale)
            return ops.gaussian_kernel(2 * math.ceil(3 * sigma) + 1, sigma)
        if k == "dhif":
            return dhif_kernel(scale, 2.0 if self.sigma is None else self.sigma)
        if k == "gaussian":
            if self.sigma is None:
                raise CubeError("Gaussian PSF needs a sigma")
            if self.half:
                return half_gaussian_kernel(self.sigma, self.size)
            size = self.size or 2 * math.ceil(3 * self.sigma) + 1
            if size % 2 == 0:
                raise CubeError(f"Gaussian PSF size {size} must be odd (an even one, centred between HR pixels, "
                                "is gaussian-half:SIZE:SIGMA)")
            return ops.gaussian_kernel(size, self.sigma)
        if k == "box":
            return ops.box_kernel(self.size or scale)
        if k in ("file", "array"):
            arr = np.asarray(self.kernel_values if k == "array" else _load_kernel(self.path), dtype=np.float64)
            if arr.ndim != 2 or arr.size == 0:
                raise CubeError(f"PSF kernel must be a 2-D array, got shape {arr.shape}")
            if not np.isfinite(arr).all() or arr.sum() <= 0:
                raise CubeError("PSF kernel must be finite with a positive sum")
            return arr / arr.sum()
        raise CubeError(f"unknown PSF {self.kind!r}: use weak, wald, dhif, gaussian, box, or a kernel file")

    @classmethod
    def parse(cls, spec: "str | PSF | dict | None") -> "PSF":
        """``"weak"``, ``"wald"``, ``"dhif"``, ``"dhif:SIGMA"``, ``"gaussian:7:1.2"`` (size, sigma), ``"gaussian:1.2"``,
        ``"box"``, ``"box:4"``, a kernel file path, a dict or a PSF."""
        if spec is None:
            return cls()
        if isinstance(spec, PSF):
            return spec
        if isinstance(spec, dict):
            unknown = sorted(set(spec) - set(cls.__dataclass_fields__))
            if unknown:
                raise CubeError(f"PSF {spec!r}: unknown keys {', '.join(unknown)}")
            return cls(**spec)
        s = str(spec)
        parts = s.split(":")
        head = parts[0].lower()
        try:
            if head in ("weak", "wald"):
                return cls(kind=head)
            if head == "dhif":
                return cls(kind="dhif", sigma=float(parts[1]) if len(parts) > 1 else None)
            if head == "gaussian-half":
                if len(parts) == 2:
                    return cls(kind="gaussian", sigma=float(parts[1]), half=True)
                if len(parts) == 3:
                    return cls(kind="gaussian", size=int(parts[1]), sigma=float(parts[2]), half=True)
                raise CubeError("a half-pixel Gaussian PSF is written gaussian-half:SIGMA or gaussian-half:SIZE:SIGMA")
            if head == "gaussian":
                if len(parts) == 2:
                    return cls(kind="gaussian", sigma=float(parts[1]))
                if len(parts) == 3:
                    return cls(kind="gaussian", size=int(parts[1]), sigma=float(parts[2]))
                raise CubeError("Gaussian PSF is written gaussian:SIGMA or gaussian:SIZE:SIGMA")
            if head == "box":
                return cls(kind="box", size=int(parts[1]) if len(parts) > 1 else None)
        except CubeError as exc:
            raise CubeError(f"PSF {s!r}: {exc}") from None
        except ValueError:
            raise CubeError(f"cannot parse PSF {s!r}") from None
        if Path(s).suffix.lower() in (".npy", ".csv", ".txt", ".mat"):
            return cls(kind="file", path=s)
        raise CubeError(f"unknown PSF {s!r}: use weak, wald, dhif, gaussian:SIGMA, gaussian:SIZE:SIGMA, box[:SIZE] "
                        "or a kernel file")

    def describe(self) -> str:
        if self.kind == "gaussian":
            return f"gaussian{'-half' if self.half else ''}(size={self.size}, sigma={self.sigma})"
        if self.kind == "box":
            return f"box({self.size or 'scale'})"
        if self.kind == "file":
            return f"file({self.path})"
        return self.kind

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def default_phase(psf: "str | PSF | dict | None", scale: int) -> int:
    """The decimation phase a PSF comes with when none is given: ``s//2 - 1`` for the ``dhif``
    kernel (its protocol's, samples at s·i + (s-1)/2), else the PROTOCOL's ``s//2``."""
    kind = PSF.parse(psf).kind.lower() if psf is not None else "weak"
    return int(scale) // 2 - 1 if kind == "dhif" and int(scale) % 2 == 0 else int(scale) // 2


def dhif_kernel(scale: int, sigma: float = 2.0) -> np.ndarray:
    """The ``dhif`` protocols' PSF (PROTOCOL.md): the s×s outer product of the taps
    ``exp(-(i - (s-1)/2)² / (2σ²))``, i = 0…s-1, normalised, as the odd
    :func:`~napari_cofusion.core.ops.half_pixel_kernel` of size s + 1."""
    s = int(scale)
    return half_gaussian_kernel(sigma, s) if s % 2 == 0 else ops.gaussian_kernel(s, float(sigma))


def half_gaussian_kernel(sigma: float, size: int | None = None) -> np.ndarray:
    """An even ``size``-tap Gaussian (taps at ``i - (size-1)/2``; default size ``2·ceil(3σ + 1/2)``)
    as the odd :func:`~napari_cofusion.core.ops.half_pixel_kernel`: centred half a pixel after
    the pixel the decimation keeps."""
    n = int(size or 2 * math.ceil(3 * float(sigma) + 0.5))
    t = np.exp(-((np.arange(n) - (n - 1) / 2.0) ** 2) / (2.0 * float(sigma) ** 2))
    k = np.outer(t, t)
    return ops.half_pixel_kernel(k / k.sum())


def _load_kernel(path: str | None) -> np.ndarray:
    if not path:
        raise CubeError("PSF kind 'file' needs a path")
    p = Path(path)
    if not p.is_file():
        raise CubeError(f"{p}: PSF kernel file not found")
    suf = p.suffix.lower()
    try:
        if suf == ".npy":
            return np.load(p, allow_pickle=False)
        if suf in (".csv", ".txt"):
            return np.loadtxt(p, delimiter="," if suf == ".csv" else None, comments="#")
        if suf == ".mat":
            import scipy.io

            d = [v for k, v in scipy.io.loadmat(p).items() if not k.startswith("__") and getattr(v, "ndim", 0) == 2]
            if not d:
                raise CubeError(f"{p}: no 2-D kernel in the file")
            return d[0]
    except CubeError:
        raise
    except Exception as exc:
        raise CubeError(f"{p}: could not read the PSF kernel ({exc})") from None
    raise CubeError(f"{p}: unsupported kernel file type {suf}")


@dataclass
class Recipe:
    """Everything needed to reproduce a simulated pair."""

    scale: int = 4
    psf: dict = field(default_factory=lambda: {"kind": "weak"})
    srf: dict = field(default_factory=lambda: {"name": "nikon-d700"})
    srf_matrix: list | None = None
    snr_db: float | None = None
    snr_ms_db: float | None = None
    seed: int | None = None
    phase: int | None = None
    protocol: str | None = None
    crop: list | None = None  # the (H, W) the reference was cropped to

    def __post_init__(self) -> None:
        """Refuse a recipe that cannot describe a pair (it would otherwise be trusted)."""
        if isinstance(self.scale, bool) or not isinstance(self.scale, int) or not 1 <= self.scale <= 64:
            raise CubeError(f"recipe: scale {self.scale!r} must be a whole number from 1 to 64")
        if self.phase is not None and (isinstance(self.phase, bool) or not isinstance(self.phase, int)
                                       or not 0 <= self.phase < self.scale):
            raise CubeError(f"recipe: phase {self.phase!r} must be a whole number in [0, {self.scale})")
        if not isinstance(self.psf, (dict, str)):
            raise CubeError(f"recipe: psf {self.psf!r} must be an object or a name")
        PSF.parse(self.psf).kernel(self.scale)  # parseable and buildable
        if not isinstance(self.srf, dict):
            raise CubeError(f"recipe: srf {self.srf!r} must be an object")
        if self.crop is not None and (not isinstance(self.crop, (list, tuple)) or len(self.crop) != 2):
            raise CubeError(f"recipe: crop {self.crop!r} must be [rows, columns]")

    @property
    def psf_obj(self) -> PSF:
        return PSF.parse(self.psf)

    def kernel(self) -> np.ndarray:
        return self.psf_obj.kernel(self.scale)

    @property
    def decimation_phase(self) -> int:
        return self.scale // 2 if self.phase is None else self.phase

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def simulate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`simulate_pair` that apply this recipe to another reference
        (e.g. to build fine-tuning scenes for a simulated pair). The SRF is the named preset when it
        is one (resampled at the new reference's bands), else the stored matrix."""
        from napari_cofusion.core.srf import srf_presets

        name = (self.srf or {}).get("name")
        if name in srf_presets():
            srf: Any = {"name": name}
        elif self.srf_matrix is not None:
            srf = np.asarray(self.srf_matrix, dtype=np.float64)
        else:
            raise CubeError(f"the recipe's SRF {name!r} is neither a preset nor stored as a matrix")
        return {"scale": int(self.scale), "psf": dict(self.psf), "srf": srf, "snr_db": self.snr_db,
                "snr_ms_db": self.snr_ms_db, "seed": self.seed, "phase": self.phase}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Recipe":
        """A recipe from JSON (``recipe.json`` or a layer's metadata), checked; keys the recipe does not
        know (``reference_source`` ...) are kept out."""
        if not isinstance(d, dict):
            raise CubeError(f"recipe: expected a JSON object, got {type(d).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


PROTOCOLS: dict[str, dict[str, Any]] = {
    **{f"cave-x{s}": {"scale": s, "psf": "weak", "srf": "nikon-d700"} for s in (2, 4, 8)},
    **{f"cave-wald-x{s}": {"scale": s, "psf": "wald", "srf": "nikon-d700"} for s in (2, 4, 8)},
    # the DHIF-Net / SFNO protocol: s×s Gaussian (sigma 2) kept at s//2 - 1, samples centred at s·i + (s-1)/2
    **{f"dhif-x{s}": {"scale": s, "psf": "dhif", "srf": "nikon-d700", "phase": default_phase("dhif", s)} for s in (4, 8)},
}


def protocol_recipe(name: str) -> dict[str, Any]:
    try:
        return dict(PROTOCOLS[name])
    except KeyError:
        raise CubeError(f"unknown protocol {name!r}: use one of {', '.join(PROTOCOLS)}") from None


@dataclass
class SimulatedPair:
    lr: Cube
    msi: Cube
    reference: Cube
    recipe: Recipe
    srf_matrix: np.ndarray


def add_noise(y: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Band-wise Gaussian noise at the target SNR: σ_b = sqrt(mean(Y_b²) / 10^(SNR/10))."""
    power = np.mean(y.astype(np.float64) ** 2, axis=(1, 2))
    sigma = np.sqrt(power / 10.0 ** (snr_db / 10.0))
    return (y + rng.standard_normal(y.shape) * sigma[:, None, None]).astype(np.float32)


def simulate_pair(
    reference: Cube,
    scale: int = 4,
    psf: "str | PSF | dict | None" = "weak",
    srf: "str | SRF | np.ndarray" = "nikon-d700",
    snr_db: float | None = None,
    seed: int | None = None,
    snr_ms_db: float | None = None,
    phase: int | None = None,
    protocol: str | None = None,
) -> SimulatedPair:
    """Simulate (LRHSI, HRMSI) from a reference cube (see the module docstring).

    ``protocol`` (``cave-x4``, ``dhif-x4`` …) fills scale, PSF, SRF (and the ``dhif`` phase) from
    the named preset.
    ``snr_ms_db`` defaults to ``snr_db``.
    """
    if protocol is not None:
        p = protocol_recipe(protocol)
        scale, psf, srf = p["scale"], p["psf"], p["srf"]
        phase = p.get("phase", phase)
    if not isinstance(scale, (int, np.integer)) or scale < 1:
        raise CubeError(f"scale must be a positive integer, got {scale!r}")
    scale = int(scale)
    c, h, w = reference.shape
    H, W = (h // scale) * scale, (w // scale) * scale
    if H == 0 or W == 0:
        raise CubeError(f"{reference.name}: {h}×{w} pixels is smaller than the scale {scale}")
    x = reference.data[:, :H, :W]
    psf_obj = PSF.parse(psf)
    kernel = psf_obj.kernel(scale)
    srf_obj = get_srf(srf)
    R = srf_obj.matrix_for(c, reference.wavelengths)
    ph = default_phase(psf_obj, scale) if phase is None else int(phase)
    with torch.inference_mode():
        xt = torch.from_numpy(np.ascontiguousarray(x))
        lr = ops.degrade(xt, kernel, scale, ph).numpy()
        ms = ops.project(xt, R).numpy()
    rng = np.random.default_rng(seed)
    if snr_db is not None:
        lr = add_noise(lr, snr_db, rng)
        ms = add_noise(ms, snr_db if snr_ms_db is None else snr_ms_db, rng)
    recipe = Recipe(
        scale=scale, psf=psf_obj.to_json(), srf=srf_obj.to_json(),
        srf_matrix=None if srf_obj.name in ("nikon-d700", "rosis-ikonos4") and not srf_obj.dropped else R.tolist(),
        snr_db=snr_db, snr_ms_db=snr_ms_db, seed=seed, phase=ph, protocol=protocol, crop=[H, W],
    )
    ms_wl = None
    if srf_obj.curves is not None and srf_obj.wavelengths is not None and reference.wavelengths is not None:
        ms_wl = (R @ reference.wavelengths).astype(np.float64)  # response-weighted band centres
    base = reference.name
    rmeta = {"recipe": recipe.to_json()}
    ref_c = reference.with_data(np.ascontiguousarray(x), name=f"{base} reference", meta={**reference.meta, **rmeta})
    lr_c = Cube(np.ascontiguousarray(lr), wavelengths=reference.wavelengths, norm_scale=reference.norm_scale,
                name=f"{base} LRHSI x{scale}", source=f"simulated from {reference.source}", meta=dict(rmeta))
    ms_c = Cube(np.ascontiguousarray(ms), wavelengths=ms_wl, norm_scale=reference.norm_scale,
                name=f"{base} HRMSI {srf_obj.name}", source=f"simulated from {reference.source}",
                meta={**rmeta, "band_names": srf_obj.kept_band_names()})
    return SimulatedPair(lr=lr_c, msi=ms_c, reference=ref_c, recipe=recipe, srf_matrix=R)


def reduced_pair(lr: np.ndarray, msi: np.ndarray, kernel: np.ndarray, scale: int,
                 phase: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A pair degraded once more by its own PSF, for training on the pair alone (reduced
    resolution, zero-shot): ``(reference, D(B*reference), D(B*msi))``, where the reference is the
    LRHSI (C, h, w) cropped to whole cells of the smaller grid, ``(h // s)·s`` by ``(w // s)·s``, and
    the MSI is cropped to match, so that the smaller MSI is exactly ``scale`` times the smaller
    LRHSI. Float32 arrays."""
    h, w = (lr.shape[-2] // scale) * scale, (lr.shape[-1] // scale) * scale
    reference = np.ascontiguousarray(lr[:, :h, :w], dtype=np.float32)
    ms = np.ascontiguousarray(msi[:, :h * scale, :w * scale], dtype=np.float32)
    with torch.inference_mode():
        return (reference, ops.degrade(torch.from_numpy(reference), kernel, scale, phase).numpy(),
                ops.degrade(torch.from_numpy(ms), kernel, scale, phase).numpy())


def infer_scale(lr_shape: tuple[int, ...], msi_shape: tuple[int, ...]) -> int:
    """The integer scale between an LRHSI (C, h, w) and an HRMSI (c, H, W): H = s·h and W = s·w."""
    h, w = lr_shape[-2:]
    H, W = msi_shape[-2:]
    if h == 0 or w == 0 or H % h or W % w or H // h != W // w:
        raise CubeError(
            f"LRHSI {h}×{w} and HRMSI {H}×{W} pixels are not related by one integer scale "
            "(the HRMSI must be exactly s times larger in both directions)"
        )
    s = H // h
    if s < 1:
        raise CubeError(f"the HRMSI ({H}×{W}) is smaller than the LRHSI ({h}×{w})")
    return s


def save_pair(pair: SimulatedPair, out_dir: str | os.PathLike, fmt: str = ".hdr", overwrite: bool = False) -> dict[str, Any]:
    """Write LRHSI, HRMSI and reference (``lr``, ``msi``, ``ref`` + ``fmt``) and ``recipe.json``:
    every target is checked first, and if a write fails the files this call already wrote are
    removed again, so the folder holds the whole pair or nothing new."""
    from napari_cofusion.core.io import write_cube, write_json
    from napari_cofusion.core.io.common import check_target

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    targets = {"lr": pair.lr, "msi": pair.msi, "ref": pair.reference}
    side = {".hdr": (".img",), ".npy": (".npy.json",)}.get(fmt, ())
    for p in [out / "recipe.json"] + [out / f"{k}{e}" for k in targets for e in (fmt, *side)]:
        check_target(p, overwrite)
    recipe = pair.recipe.to_json()
    recipe["srf_matrix"] = pair.srf_matrix.tolist()
    recipe["reference_source"] = pair.reference.source
    written: dict[str, Any] = {}
    made: list[str] = []
    try:
        for key, cube in targets.items():
            files = write_cube(cube, out / f"{key}{fmt}", overwrite=overwrite)
            made += files
            written[key] = files[0]
        written["recipe"] = write_json(recipe, out / "recipe.json", overwrite=overwrite)
    except BaseException:
        if not overwrite:
            for f in made:
                Path(f).unlink(missing_ok=True)
        raise
    return written


def read_pair(lr_path: str | os.PathLike, msi_path: str | os.PathLike,
              recipe_path: str | os.PathLike | None = None) -> tuple[Cube, Cube]:
    """Read an LRHSI and an HRMSI; the recipe (``recipe_path``, default the ``recipe.json`` that
    :func:`save_pair` writes beside the LRHSI, where there is one) goes into the LRHSI's
    ``meta["recipe"]``, where :func:`~napari_cofusion.fusion.engine.fuse` finds its PSF and phase."""
    import json

    from napari_cofusion.core.io import read_cube

    lr, msi = read_cube(lr_path), read_cube(msi_path)
    recipe = Path(recipe_path) if recipe_path else Path(lr_path).parent / "recipe.json"
    if recipe_path or recipe.is_file():
        try:
            lr.meta["recipe"] = json.loads(recipe.read_text())
        except json.JSONDecodeError as exc:
            raise CubeError(f"{recipe}: not valid JSON ({exc})") from None
    return lr, msi
