"""Model weights: ``NAME.safetensors`` plus ``NAME.json`` (the card). Loading never unpickles.

The card holds the architecture and its hyper-parameters, the HS band count and wavelengths,
the MS band count and SRF, the scale, the PSF protocol, the training data and steps, the
validation metrics and the date.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from napari_cofusion.core.errors import CofusionWarning, CubeError, WeightsError
from napari_cofusion.core.io.common import check_target, json_text, new_files
from napari_cofusion.learn.models import ARCHITECTURES, build_model, check_card

__all__ = ["make_card", "save_weights", "check_weights_target", "weights_paths", "rescue_dir", "load_weights", "shipped_weights_dir", "list_weights", "find_weights", "resolve_weights", "read_card"]


def shipped_weights_dir() -> Path:
    """``weights/`` at the repository root, seen from the package through the symlink
    ``napari_cofusion/weights`` (a real folder in a wheel); or NAPARI_COFUSION_WEIGHTS."""
    env = os.environ.get("NAPARI_COFUSION_WEIGHTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "weights"


def make_card(model: torch.nn.Module, *, hs_wavelengths: Any = None, srf: Any = None, psf: Any = None,
              protocol: str | None = None, **fields: Any) -> dict[str, Any]:
    """The weights card for ``model``: its architecture and configuration, band counts and scale
    (from the model), the HS wavelengths (nm), SRF, PSF and protocol it was trained for, and any
    further ``fields`` (``training``, ``training_data``, ``training_mode``, ``validation``, ...).
    The one card builder: the CLI's ``train`` and ``finetune`` and the widget's "Save weights" use it.
    ``save_weights`` adds the date and the parameter count."""
    arch = next((name for name, (cls, _cfg) in ARCHITECTURES.items() if isinstance(model, cls)), None)
    if arch is None:
        raise WeightsError(f"no card for a {type(model).__name__}: not one of the architectures {', '.join(ARCHITECTURES)}")
    cfg = model.cfg
    wl = None if hs_wavelengths is None else [float(w) for w in hs_wavelengths]
    return {"architecture": arch, "config": cfg.to_json(), "hs_bands": cfg.hs_bands, "hs_wavelengths_nm": wl,
            "ms_bands": cfg.ms_bands, "srf": srf, "scale": cfg.scale, "psf": psf, "protocol": protocol, **fields}


def weights_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``NAME.safetensors`` and its card ``NAME.json`` for a path given with or without suffix."""
    p = Path(path)
    if p.suffix != ".safetensors":
        p = p.with_suffix(".safetensors")
    return p, p.with_suffix(".json")


def check_weights_target(path: str | os.PathLike, overwrite: bool = False) -> tuple[Path, Path]:
    """Refuse, before training, a weights name whose file or card exists (unless ``overwrite``)
    or whose folder is missing or not writable."""
    p, card_path = weights_paths(path)
    check_target(p, overwrite)
    check_target(card_path, overwrite)
    return p, card_path


def rescue_dir() -> Path:
    """Where weights go when the folder asked for cannot be written: NAPARI_COFUSION_RESCUE, else
    ``~/.cache/napari-cofusion/rescued``."""
    env = os.environ.get("NAPARI_COFUSION_RESCUE")
    return Path(env) if env else Path.home() / ".cache" / "napari-cofusion" / "rescued"


def _write_pair(p: Path, card_path: Path, state: dict, card: dict, overwrite: bool) -> None:
    text = json_text(card) + "\n"
    with new_files([p, card_path], overwrite) as (tmp, tmp_card):
        save_file(state, str(tmp), metadata={"format": "pt", "architecture": str(card.get("architecture", ""))})
        tmp_card.write_text(text)


def save_weights(model: torch.nn.Module, path: str | os.PathLike, card: dict[str, Any], overwrite: bool = False) -> tuple[str, str]:
    """Write ``path`` (.safetensors) and its card (.json beside it), atomically, all or nothing.

    When the folder cannot be written (missing, read-only, full) the weights are not lost: they
    go to :func:`rescue_dir` under a new name, with a :class:`CofusionWarning` saying where.
    An existing name is refused (:class:`CubeError`) unless ``overwrite``.
    """
    p, card_path = weights_paths(path)
    full = dict(card)
    full.setdefault("date", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    full["n_params"] = int(sum(t.numel() for t in model.parameters()))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for q in (p, card_path):
        if q.exists() and not overwrite:
            raise CubeError(f"{q}: already exists; choose another name (or allow overwriting)")
    try:
        _write_pair(p, card_path, state, full, overwrite)  # new_files checks the folder first
        return str(p), str(card_path)
    except (CubeError, OSError) as exc:
        reason = str(exc)
    folder = rescue_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    rp, rc = weights_paths(folder / f"{p.stem}-{stamp}-{os.getpid()}")
    _write_pair(rp, rc, state, {**full, "rescued_from": str(p)}, False)
    warnings.warn(CofusionWarning(f"could not write {p} ({reason}): the weights were saved to {rp} instead"),
                  stacklevel=2)
    return str(rp), str(rc)


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    card_path = p.with_suffix(".json")
    if not card_path.is_file():
        raise WeightsError(f"{p}: no card {card_path.name} beside the weights (architecture and band counts are needed)")
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{card_path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise WeightsError(f"{card_path}: cannot be read ({exc})") from None
    return check_card(card, str(card_path))


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Build the model the card describes and load the safetensors state into it."""
    p = Path(path)
    if p.suffix != ".safetensors":
        if p.with_suffix(".safetensors").is_file():
            p = p.with_suffix(".safetensors")
        else:
            raise WeightsError(f"{p}: weights must be a .safetensors file (pickled checkpoints are never loaded)")
    if not p.is_file():
        raise WeightsError(f"{p}: weights file not found")
    card = read_card(p)
    try:
        state = load_file(str(p), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{p}: not a readable safetensors file ({exc})") from None
    model = build_model(card)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise WeightsError(
            f"{p}: weights do not match the architecture in its card (missing {len(missing)} tensors "
            f"{missing[:2]}, unexpected {len(unexpected)} {unexpected[:2]}, wrong shape {len(wrong)} {wrong[:2]})"
        )
    model.load_state_dict(state)
    model.to(device).eval()
    return model, card


def list_weights(folder: str | os.PathLike | None = None) -> list[Path]:
    d = Path(folder) if folder else shipped_weights_dir()
    if not d.is_dir():
        return []
    return sorted(p for p in d.glob("*.safetensors") if p.with_suffix(".json").is_file())


def _trained_for(card: dict[str, Any], scale: int, kernel: Any, phase: int | None) -> bool:
    """Whether the card's PSF (and phase) are the pair's: the same kernel, the same phase."""
    from napari_cofusion.degrade.simulate import PSF, default_phase

    psf = card.get("psf")
    try:
        obj = PSF.parse({"kind": psf} if isinstance(psf, str) else psf)
        k = obj.kernel(scale)
    except (CubeError, TypeError, ValueError):
        return False
    want = np.asarray(kernel, dtype=np.float64)
    ph = (card.get("config") or {}).get("phase")
    ph = default_phase(obj, scale) if ph is None else int(ph)
    return k.shape == want.shape and bool(np.allclose(k, want, atol=1e-6)) and (phase is None or ph == int(phase))


def find_weights(hs_bands: int, ms_bands: int, scale: int, folder: str | os.PathLike | None = None,
                 architecture: str = "cofusion", kernel: Any = None, phase: int | None = None) -> Path:
    """The shipped weights of ``architecture`` whose card matches the band counts and scale; with
    the pair's PSF ``kernel`` (and ``phase``), the ones trained for that PSF when there are
    (``cofusion_dhif_x4`` for a dhif pair), else the first by name."""
    found = []
    listed = [(p, read_card(p)) for p in list_weights(folder)]
    for p, c in listed:
        if c["architecture"] == architecture and (c.get("hs_bands"), c.get("ms_bands"), c.get("scale")) == (
                hs_bands, ms_bands, scale):
            found.append(p)
    if found and kernel is not None:
        same = [p for p in found if _trained_for(read_card(p), scale, kernel, phase)]
        found = same or found
    if not found:
        have = ", ".join(
            f"{p.stem} ({c['architecture']}, {c.get('hs_bands')} HS / {c.get('ms_bands')} MS bands, ×{c.get('scale')})"
            for p, c in listed
        ) or "none"
        raise WeightsError(
            f"no shipped {architecture} weights for {hs_bands} HS bands, {ms_bands} MS bands at ×{scale} "
            f"(available: {have}); fine-tune on the scene, or choose a weights file of your own"
        )
    return found[0]


def resolve_weights(spec: str | os.PathLike | None, hs_bands: int, ms_bands: int, scale: int,
                    architecture: str = "cofusion") -> Path:
    """A weights name in ``weights/``, a path, or (None) the shipped ``architecture`` weights
    matching the input."""
    if spec is None:
        return find_weights(hs_bands, ms_bands, scale, architecture=architecture)
    p = Path(spec)
    if p.suffix == ".safetensors" or p.exists() or p.with_suffix(".safetensors").exists():
        return p if p.suffix == ".safetensors" else p.with_suffix(".safetensors")
    cand = shipped_weights_dir() / f"{spec}.safetensors"
    if cand.is_file():
        return cand
    names = ", ".join(q.stem for q in list_weights()) or "none"
    raise WeightsError(f"weights {spec!r} not found (shipped: {names})")
