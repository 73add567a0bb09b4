"""The learned models as fusion methods, registered on import: CoFusion (``method="cofusion"``),
its distilled CSAKD student (``method="csakd"``), HyFusion (``"hyfusion"``) and S³RNet (``"s3rnet"``).

:mod:`napari_cofusion.api` imports this module explicitly; nothing imports it lazily.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_cofusion.core.errors import CofusionError, WeightsError
from napari_cofusion.fusion.classical import glp_hs_reach
from napari_cofusion.fusion.pair import check_fits
from napari_cofusion.fusion.registry import FusionMethod, register
from napari_cofusion.learn.device import keep_freed_memory, resolve_device
from napari_cofusion.learn.infer import forward
from napari_cofusion.learn.models import ARCHITECTURES, HyFusionConfig
from napari_cofusion.learn.train import classical_base
from napari_cofusion.learn.weights import find_weights, load_weights, read_card, resolve_weights

__all__ = ["load_model_for", "run_model"]


@lru_cache(maxsize=4)
def _cached(path: str, mtime: float, device: str):
    return load_weights(path, device)


def load_model_for(weights: "str | Path | None", hs_bands: int, ms_bands: int, scale: int, device: str = "cpu",
                   architecture: str = "cofusion"):
    """Resolve and load weights (default: the shipped ``architecture`` weights for the band counts
    and scale), checking that they fit the input and are of that architecture; returns (model,
    card, path)."""
    path = resolve_weights(weights, hs_bands, ms_bands, scale, architecture)
    model, card = _cached(str(path.resolve()), path.stat().st_mtime if path.is_file() else 0.0, device)
    if card["architecture"] != architecture:
        raise WeightsError(f"the weights '{path.stem}' are a {card['architecture']} model, not {architecture}: "
                           f"fuse with the method '{card['architecture']}'")
    check_fits((card.get("hs_bands"), card.get("ms_bands"), card.get("scale")), (hs_bands, ms_bands, scale),
               f"the weights '{path.stem}'")
    return model, card, path


def run_model(model: torch.nn.Module, lr: np.ndarray, msi: np.ndarray, scale: int, kernel: np.ndarray,
              phase: int) -> np.ndarray:
    """Fuse a whole (block of a) pair with a model instance, its glp-hs base included; ``fuse``
    cuts large scenes into blocks before it gets here."""
    keep_freed_memory()  # full-frame feature maps: reuse freed memory instead of fresh pages
    cfg = model.cfg
    check_fits((cfg.hs_bands, cfg.ms_bands, cfg.scale), (lr.shape[0], msi.shape[0], scale), "the model")
    base = torch.from_numpy(classical_base(lr, msi, kernel, scale, phase)) if cfg.base == "glp-hs" else None
    model.eval()
    return forward(model, torch.from_numpy(lr), torch.from_numpy(msi), base).cpu().numpy()


def _runner(architecture: str):
    def run(lr: np.ndarray, msi: np.ndarray, scale: int, kernel: np.ndarray, phase: int,
            weights: "str | Path | None" = None, device: str | None = None, model: Any = None,
            **_: Any) -> np.ndarray:
        dev = str(resolve_device(device or None))
        if model is None:
            model, _card, _path = load_model_for(weights, lr.shape[0], msi.shape[0], scale, dev, architecture)
        else:
            cls = ARCHITECTURES[architecture][0]
            if not isinstance(model, cls):
                raise WeightsError(f"the model given is a {type(model).__name__}, not a {cls.__name__}: "
                                   f"fuse it with its own method")
            if device:
                model.to(dev)  # a model instance (the GUI's fine-tuned one) goes where it is asked
        return run_model(model, lr, msi, scale, kernel, phase)

    run.__name__ = f"_{architecture}"
    return run


_cofusion = _runner("cofusion")
_csakd = _runner("csakd")
_hyfusion = _runner("hyfusion")
_s3rnet = _runner("s3rnet")


#: HR pixels of context the network gets around every block (its receptive field is wider, but the
#: output changes by < 1e-4 beyond this; tests/test_model.py checks blocks against the whole frame)
NETWORK_CONTEXT = 32


#: LR pixels of context the CSAKD student gets around every block (it works on the LR grid;
#: tests/test_csakd.py checks blocks against the whole frame)
STUDENT_CONTEXT_LR = 8


#: LR pixels of context HyFusion gets around every block: two of its attention windows (its
#: attention reaches further, with weights that fade; tests/test_networks.py measures the blocks
#: against the whole frame)
HYFUSION_CONTEXT_LR = 16
#: S³RNet's receptive field on the LR grid with the default config: 5 pixels per branch (stem, one
#: DFAB of four 3×3), twice that in the half-resolution V branch, 8 in the two DFABs after the
#: fusion, 2 in the head, rounded up
S3RNET_CONTEXT_LR = 24


def _card_for(architecture: str, options: dict[str, Any] | None, hs_bands: int = 0, ms_bands: int = 0,
              scale: int = 0) -> dict[str, Any]:
    """The card of the weights a run will use (named in ``options``, else the shipped ones for
    these band counts and scale); {} when there is none or it cannot be read (``fuse`` reports
    that itself when it loads the weights)."""
    spec = (options or {}).get("weights")
    if spec is None and not hs_bands:
        return {}
    try:
        return read_card(resolve_weights(spec, hs_bands, ms_bands, scale, architecture))
    except (CofusionError, OSError, ValueError):
        return {}


def _network_config(architecture: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """The configuration of the network a run will use: the model instance's, else its weights
    card's (``fuse`` has named the weights by the time blocks are planned); {} when unknown."""
    model = (options or {}).get("model")
    if model is not None and hasattr(model, "cfg"):
        return dict(vars(model.cfg))
    return dict(_card_for(architecture, options).get("config") or {})


def _hyfusion_align(scale: int, options: dict[str, Any] | None = None) -> int:
    """HR pixels block origins are multiples of: one attention window of the network that runs
    (8 LR pixels by default), so a block's windows are the whole frame's."""
    window = int(_network_config("hyfusion", options).get("window", HyFusionConfig.window))
    return math.lcm(scale * window, 8)


def _s3rnet_align(scale: int, options: dict[str, Any] | None = None) -> int:
    """Two LR pixels (the V branch pools 2×2 LR cells), so a block's cells are the whole frame's."""
    return math.lcm(2 * scale, 8)


def _reach(scale: int, kernel: Any) -> int:
    return NETWORK_CONTEXT + glp_hs_reach(scale, kernel, radius=2)  # its base: the fixed radius-2 glp-hs


def _lr_grid_reach(context_lr: int):
    """The reach of a network working on the LR grid: ``context_lr`` LR pixels, plus its base (the
    fixed radius-2 glp-hs)."""
    def reach(scale: int, kernel: Any) -> int:
        return context_lr * scale + glp_hs_reach(scale, kernel, radius=2)

    return reach


_student_reach = _lr_grid_reach(STUDENT_CONTEXT_LR)
_hyfusion_reach = _lr_grid_reach(HYFUSION_CONTEXT_LR)
_s3rnet_reach = _lr_grid_reach(S3RNET_CONTEXT_LR)


def _bytes_per_pixel(C: int, c: int) -> float:
    """Peak working memory per HR pixel of a block, measured on this CPU at width 64: about 7 kB
    at 31 bands and 8.5 kB at 128 for the network with its glp-hs base, 9.4 kB at 31 bands for a
    block of a 1024² scene with the consistency step (/tmp probes with ``ru_maxrss``, README)."""
    return 8000.0 + 32.0 * C


def _student_bytes_per_pixel(C: int, c: int) -> float:
    """Peak working memory per HR pixel of a block for the student with its glp-hs base: it works
    on the LR grid, so mostly the base, the HR head and the inputs (benchmarks/memory.py)."""
    return 3000.0 + 32.0 * C


def _defaults_for(architecture: str):
    return lambda lr, msi, scale, options: _defaults(lr, msi, scale, options, architecture)


def _defaults(lr, msi, scale: int, options: dict[str, Any], architecture: str = "cofusion") -> dict[str, Any]:
    """The PSF and phase the weights were trained for (a scene fine-tune stores its estimates in
    the card), used when the pair carries no recipe."""
    model = options.get("model")
    if model is not None:
        return {"phase": getattr(model.cfg, "phase", None), "psf": getattr(model, "psf", None)}
    card = _card_for(architecture, options, lr.bands, msi.bands, scale)
    if not card:
        return {}
    psf = card.get("psf")
    if isinstance(psf, str):
        psf = {"kind": psf}
    return {"psf": psf if isinstance(psf, dict) and psf.get("kind") else None,
            "phase": (card.get("config") or {}).get("phase")}


def _chooser_for(architecture: str):
    def choose(lr, msi, scale: int, kernel, phase: int) -> str:
        """The shipped ``architecture`` weights for the pair's bands, scale and PSF."""
        return find_weights(lr.bands, msi.bands, scale, architecture=architecture, kernel=kernel, phase=phase).stem

    return choose


def _provenance_for(architecture: str):
    def provenance(lr, msi, scale: int, options: dict[str, Any]) -> dict[str, Any]:
        """Which weights file the method used (a model instance has none)."""
        if options.get("model") is not None:
            return {}
        return {"weights": resolve_weights(options.get("weights"), lr.bands, msi.bands, scale, architecture).name}

    return provenance


register(FusionMethod("cofusion", "CoFusion network (weights from weights/ or a .safetensors file)", _cofusion,
                      needs_weights=True, defaults=_defaults_for("cofusion"), consistency="auto",
                      choose_weights=_chooser_for("cofusion"),
                      provenance=_provenance_for("cofusion"), reach=_reach, bytes_per_pixel=_bytes_per_pixel))
register(FusionMethod("csakd", "CSAKD student distilled from CoFusion: the fast learned method (weights from "
                      "weights/ or a .safetensors file)", _csakd, needs_weights=True, defaults=_defaults_for("csakd"),
                      choose_weights=_chooser_for("csakd"),
                      consistency="auto", provenance=_provenance_for("csakd"), reach=_student_reach,
                      bytes_per_pixel=_student_bytes_per_pixel))
#: HyFusion and S³RNet use the student's memory estimate: measured rise of the peak RSS while fusing a
#: 768² 31-band pair with the glp-hs base, no consistency step (a fresh process each, ru_maxrss): CSAKD
#: 1.8 kB, HyFusion 1.4 kB, S³RNet 1.3 kB per HR pixel, all under the estimate's 4 kB
for _name, _run, _reach_of, _align, _text in (
        ("hyfusion", _hyfusion, _hyfusion_reach, _hyfusion_align, "HyFusion: shifted-window attention blocks over a quasi-fused draft "
         "and a dual-coupled spatial/spectral network (weights from weights/ or a .safetensors file)"),
        ("s3rnet", _s3rnet, _s3rnet_reach, _s3rnet_align, "S3RNet: multi-branch fusion with sparse sigmoid attention weights and "
         "dense blocks (weights from weights/ or a .safetensors file)")):
    register(FusionMethod(_name, _text, _run, needs_weights=True, defaults=_defaults_for(_name),
                          choose_weights=_chooser_for(_name), consistency="auto", provenance=_provenance_for(_name),
                          reach=_reach_of, bytes_per_pixel=_student_bytes_per_pixel, align=_align))
