"""Registers the learned CoFusion model in the fusion-method registry (``method="cofusion"``)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cube import CubeError
from .infer import auto_tile, fuse_tensor
from .methods import FusionMethod, register
from .weights import load_weights, resolve_weights

__all__ = ["load_model_for", "run_model"]


@lru_cache(maxsize=4)
def _cached(path: str, mtime: float, device: str):
    return load_weights(path, device)


def load_model_for(weights: "str | Path | None", hs_bands: int, ms_bands: int, scale: int, device: str = "cpu"):
    """Resolve and load weights, checking that they fit the input; returns (model, card, path)."""
    path = resolve_weights(weights, hs_bands, ms_bands, scale)
    if not path.is_file():
        raise CubeError(f"{path}: weights file not found")
    model, card = _cached(str(path.resolve()), path.stat().st_mtime, device)
    want = (card.get("hs_bands"), card.get("ms_bands"), card.get("scale"))
    if want != (hs_bands, ms_bands, scale):
        raise CubeError(
            f"weights '{path.stem}' expect {want[0]} HS bands, {want[1]} MS bands at ×{want[2]}; "
            f"the input has {hs_bands} HS bands, {ms_bands} MS bands at ×{scale}"
        )
    return model, card, path


def _device(name: str | None) -> str:
    from .train import resolve_device

    return str(resolve_device(name or None))


def run_model(model: torch.nn.Module, lr: np.ndarray, msi: np.ndarray, scale: int, kernel: np.ndarray, phase: int,
              tile: int | None = None, overlap: int = 64, progress=None) -> np.ndarray:
    """Fuse with a model instance (no weights file involved): the GUI's fine-tuned models use this."""
    from .train import classical_base, keep_freed_memory

    keep_freed_memory()  # full-frame feature maps: reuse freed memory instead of fresh pages
    cfg = model.cfg
    if (lr.shape[0], msi.shape[0], scale) != (cfg.hs_bands, cfg.ms_bands, cfg.scale):
        raise CubeError(
            f"the model expects {cfg.hs_bands} HS bands, {cfg.ms_bands} MS bands at ×{cfg.scale}; "
            f"the input has {lr.shape[0]} HS bands, {msi.shape[0]} MS bands at ×{scale}"
        )
    base = torch.from_numpy(classical_base(lr, msi, kernel, scale, phase)) if cfg.base == "glp-hs" else None
    if tile is None:
        tile = auto_tile(lr.shape[0], *msi.shape[-2:])
    model.eval()
    out = fuse_tensor(model, torch.from_numpy(lr), torch.from_numpy(msi), base, tile=tile, overlap=overlap, progress=progress)
    return out.cpu().numpy()


def _cofusion(lr: np.ndarray, msi: np.ndarray, scale: int, kernel: np.ndarray, phase: int,
              weights: "str | Path | None" = None, device: str | None = None, model: Any = None,
              tile: int | None = None, overlap: int = 64, progress=None, **_: Any) -> np.ndarray:
    if model is None:
        model, _card, _path = load_model_for(weights, lr.shape[0], msi.shape[0], scale, _device(device))
    elif device:
        model.to(_device(device))  # a model instance (the GUI's fine-tuned one) goes where it is asked
    return run_model(model, lr, msi, scale, kernel, phase, tile=tile, overlap=overlap, progress=progress)


def _defaults(lr, msi, scale: int, options: dict[str, Any]) -> dict[str, Any]:
    """The PSF and phase the weights were trained for (a scene fine-tune stores its estimates in
    the card), used when the pair carries no recipe."""
    model = options.get("model")
    if model is not None:
        return {"phase": getattr(model.cfg, "phase", None), "psf": getattr(model, "psf", None)}
    try:
        path = resolve_weights(options.get("weights"), lr.bands, msi.bands, scale)
        card = json.loads(path.with_suffix(".json").read_text())
    except (CubeError, OSError, ValueError):
        return {}
    psf = card.get("psf")
    if isinstance(psf, str):
        psf = {"kind": psf}
    return {"psf": psf if isinstance(psf, dict) and psf.get("kind") else None,
            "phase": (card.get("config") or {}).get("phase")}


register(FusionMethod("cofusion", "CoFusion network (weights from weights/ or a .safetensors file)", _cofusion,
                      needs_weights=True, defaults=_defaults, consistency="auto"))
