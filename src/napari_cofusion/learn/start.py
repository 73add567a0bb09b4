"""Where a fine-tune starts: the one rule the CLI's ``finetune`` and the Fusion widget share."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

from napari_cofusion.core.errors import WeightsError
from napari_cofusion.fusion.pair import check_fits
from napari_cofusion.learn.models import CoFusion, CoFusionConfig
from napari_cofusion.learn.selfsup import adapt_model
from napari_cofusion.learn.weights import find_weights, list_weights, load_weights, resolve_weights

__all__ = ["SHIPPED", "NEW", "StartingModel", "starting_model"]

#: the choices besides a weights path / name and a model instance
SHIPPED = "shipped"  # the shipped weights matching the band counts and scale
NEW = "new"  # a freshly initialised model


@dataclass
class StartingModel:
    model: CoFusion
    origin: str  # where it came from, for messages and the card ("new model", a path, ...)
    mode: str = "new"  # "pretrained", "adapted" (body kept, band-count layers re-initialised) or "new"
    reinitialised: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.mode == "adapted":
            return f"{self.origin} (body kept, {len(self.reinitialised)} band-count tensors re-initialised)"
        return self.origin


def starting_model(choice: "str | os.PathLike | CoFusion | None", hs_bands: int, ms_bands: int, scale: int,
                   phase: int | None = None, adapt: bool = False) -> StartingModel:
    """The model a fine-tune for ``hs_bands`` / ``ms_bands`` at ``scale`` starts from.

    ``choice``: ``None`` or :data:`SHIPPED` (the shipped weights matching the band counts and scale),
    :data:`NEW`, a weights path or shipped name, or a model instance (the GUI's session model; it is
    copied, never changed). With ``adapt`` (scene-only fine-tuning) starting weights for other band
    counts keep their body (:func:`~napari_cofusion.learn.selfsup.adapt_model`) and, without matching
    shipped weights, any shipped CoFusion gives the body. Without ``adapt`` the weights must fit
    (:class:`WeightsError` otherwise), and a missing shipped match gives a new model.
    """
    want = (hs_bands, ms_bands, scale)
    start, origin = None, "new model"
    if isinstance(choice, CoFusion):
        start, origin = choice, "fine-tuned in this session"
        if not adapt:
            cfg = choice.cfg
            check_fits((cfg.hs_bands, cfg.ms_bands, cfg.scale), want, "the model fine-tuned in this session", "this scene")
            return StartingModel(copy.deepcopy(choice), origin, "pretrained")
    elif choice in (None, SHIPPED):
        try:
            path: Path | None = find_weights(*want)
        except WeightsError:
            shipped = list_weights()
            path = shipped[0] if (adapt and shipped) else None
            if path is None:
                origin = f"new model (no shipped weights for {hs_bands} HS / {ms_bands} MS bands at ×{scale})"
        if path is not None:
            start, _card = load_weights(path)
            origin = str(path)
    elif choice != NEW:
        path = resolve_weights(choice, *want)
        start, card = load_weights(path)
        origin = str(path)
        if not adapt:
            check_fits((card.get("hs_bands"), card.get("ms_bands"), card.get("scale")), want,
                       f"the weights '{path.stem}'", "this scene", hint="start from a new model instead")
    if start is None:
        cfg = CoFusionConfig(hs_bands=hs_bands, ms_bands=ms_bands, scale=scale, base="glp-hs", phase=phase)
        return StartingModel(CoFusion(cfg), origin, "new")
    model, info = adapt_model(start, hs_bands, ms_bands, scale, phase if adapt else start.cfg.phase)
    return StartingModel(model, origin, info["mode"], list(info["reinitialised"]))
