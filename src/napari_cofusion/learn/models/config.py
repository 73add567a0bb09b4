"""The configuration every LR-grid fusion network shares (HyFusion, S³RNet): band counts, scale,
the global residual's base, the decimation phase and the correction's unit, with bounds checked
and the JSON round trip of a weights card. A network's config subclasses it, adds its own fields
and ``LIMITS``, and may check more in ``check_more``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from napari_cofusion.core.errors import WeightsError

__all__ = ["NetConfig"]


@dataclass
class NetConfig:
    hs_bands: int = 31
    ms_bands: int = 3
    scale: int = 4
    base: str = "glp-hs"  # global residual: "glp-hs" (classical fusion, computed once per scene) or "bicubic"
    phase: int | None = None  # decimation phase of the LRHSI (default scale // 2)
    residual_scale: float = 0.01  # the correction is predicted in units of this (about the base's error)

    #: the network's name in messages
    NAME: ClassVar[str] = "network"
    #: integer fields and their bounds: a card or a command line outside them is refused before anything is built
    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {}
    _COMMON: ClassVar[dict[str, tuple[int, int]]] = {"hs_bands": (1, 4096), "ms_bands": (1, 512), "scale": (2, 32)}

    def __post_init__(self) -> None:
        self.check()

    def error(self, msg: str) -> WeightsError:
        return WeightsError(f"{self.NAME} configuration: {msg}")

    def check(self) -> None:
        """Raise :class:`WeightsError` naming the field when the configuration is out of bounds."""
        for name, (lo, hi) in {**self._COMMON, **self.LIMITS}.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise self.error(f"{name} = {v!r} is outside {lo}–{hi}")
        if self.base not in ("bicubic", "glp-hs"):
            raise self.error(f"base = {self.base!r}: use bicubic or glp-hs")
        if self.phase is not None and (isinstance(self.phase, bool) or not isinstance(self.phase, int)
                                       or not 0 <= self.phase < self.scale):
            raise self.error(f"phase = {self.phase!r} must be an integer in [0, {self.scale})")
        v = self.residual_scale
        if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and 0 < v <= 10):
            raise self.error(f"residual_scale = {v!r} must be in (0, 10]")
        self.check_more()

    def check_more(self) -> None:
        """The network's own constraints between fields (none here)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Any) -> "NetConfig":
        """A card's ``config``: unknown keys refused (a typo would otherwise build the default),
        bounds checked."""
        if not isinstance(d, dict):
            raise WeightsError(f"{cls.NAME} configuration: expected a JSON object, got {type(d).__name__}")
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise WeightsError(f"{cls.NAME} configuration: unknown keys {', '.join(unknown)}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise WeightsError(f"{cls.NAME} configuration: {exc}") from None
