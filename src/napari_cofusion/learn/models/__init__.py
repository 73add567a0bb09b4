"""Learned fusion models; ``build_model`` makes one from a weights card."""

from __future__ import annotations

from typing import Any

from napari_cofusion.core.errors import WeightsError
from napari_cofusion.learn.models.cofusion import CoFusion, CoFusionConfig

__all__ = ["CoFusion", "CoFusionConfig", "build_model", "ARCHITECTURES"]

ARCHITECTURES = {"cofusion": (CoFusion, CoFusionConfig)}


def build_model(card: dict[str, Any]):
    arch = card.get("architecture", "cofusion")
    if arch not in ARCHITECTURES:
        raise WeightsError(f"unknown architecture {arch!r} in the weights card (known: {', '.join(ARCHITECTURES)})")
    cls, cfg_cls = ARCHITECTURES[arch]
    return cls(cfg_cls.from_json(card.get("config", {})))
