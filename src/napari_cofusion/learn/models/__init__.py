"""Learned fusion models; ``build_model`` makes one from a weights card."""

from __future__ import annotations

from typing import Any

from napari_cofusion.core.errors import WeightsError
from napari_cofusion.learn.models.cofusion import CoFusion, CoFusionConfig
from napari_cofusion.learn.models.csakd import CSAKDConfig, CSAKDStudent
from napari_cofusion.learn.models.hyfusion import HyFusion, HyFusionConfig
from napari_cofusion.learn.models.s3rnet import S3RNet, S3RNetConfig

__all__ = ["CoFusion", "CoFusionConfig", "CSAKDStudent", "CSAKDConfig", "HyFusion", "HyFusionConfig", "S3RNet",
           "S3RNetConfig", "build_model", "check_card", "ARCHITECTURES", "SUPERVISED"]

ARCHITECTURES = {"cofusion": (CoFusion, CoFusionConfig), "csakd": (CSAKDStudent, CSAKDConfig),
                 "hyfusion": (HyFusion, HyFusionConfig), "s3rnet": (S3RNet, S3RNetConfig)}
#: the architectures ``train`` builds from scratch on reference scenes (CSAKD is distilled instead)
SUPERVISED = ("cofusion", "hyfusion", "s3rnet")


def build_model(card: dict[str, Any]):
    """The model a weights card describes (checked first: :func:`check_card`)."""
    check_card(card)
    cls, cfg_cls = ARCHITECTURES[card["architecture"]]
    return cls(cfg_cls.from_json(card["config"]))


def check_card(card: Any, where: str = "the weights card") -> dict[str, Any]:
    """Refuse a card that does not say what to build: it must be a JSON object with a known
    ``architecture``, a ``config`` within bounds, and ``hs_bands`` / ``ms_bands`` / ``scale`` that
    agree with the config. Returns the card."""
    if not isinstance(card, dict):
        raise WeightsError(f"{where}: expected a JSON object, got {type(card).__name__}")
    missing = [k for k in ("architecture", "config", "hs_bands", "ms_bands", "scale") if k not in card]
    if missing:
        raise WeightsError(f"{where}: lacks {', '.join(missing)} (without them another model would be built)")
    arch = card["architecture"]
    if arch not in ARCHITECTURES:
        raise WeightsError(f"{where}: unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})")
    cfg = ARCHITECTURES[arch][1].from_json(card["config"])
    for k in ("hs_bands", "ms_bands", "scale"):
        if card[k] != getattr(cfg, k):
            raise WeightsError(f"{where}: {k} = {card[k]!r} but its config says {getattr(cfg, k)!r}")
    return card
