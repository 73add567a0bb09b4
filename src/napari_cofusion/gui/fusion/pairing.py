"""The pair as layers, without Qt: what the Pair panel shows for a selection, and the pair it
guesses from the viewer's cube layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from napari_cofusion import api
from napari_cofusion.core.errors import CofusionError
from napari_cofusion.gui.base import same_layer

__all__ = ["LayerShape", "Pair", "PairCheck", "layer_key", "check_layers", "guess_pair"]


def layer_key(layer) -> str | None:
    """A stable key for a layer: napari hands plugin widgets proxies of the viewer and its layers
    (a new proxy per access), so the key is the wrapped layer's id."""
    if layer is None:
        return None
    return str(id(getattr(layer, "__wrapped__", layer)))


class LayerShape:
    """Just enough of a Cube (name and shape) for ``api.check_pair`` without copying data."""

    def __init__(self, layer) -> None:
        self.name = layer.name
        self.shape = tuple(int(s) for s in layer.data.shape)
        self.bands = self.shape[0]
        self.spatial_shape = self.shape[1:]


@dataclass(frozen=True)
class Pair:
    """The selected LRHSI, HRMSI and (optional) reference layers."""

    lr: Any = None
    msi: Any = None
    reference: Any = None

    def same(self, other: "Pair") -> bool:
        """The same three layers (proxies of one layer count as the same)."""
        return all((a is None and b is None) or same_layer(a, b) for a, b in
                   ((self.lr, other.lr), (self.msi, other.msi), (self.reference, other.reference)))


@dataclass(frozen=True)
class PairCheck:
    scale: int | None = None
    info: str = ""
    note: str = ""  # the reference does not match the pair (a warning, the pair still fuses)
    problem: str = ""  # why the pair cannot be fused


def check_layers(pair: Pair) -> PairCheck:
    """The pair's scale (None when it cannot be fused) and the texts describing it."""
    lr, msi, ref = pair.lr, pair.msi, pair.reference
    if lr is None or msi is None:
        return PairCheck(info="Load or simulate an LRHSI and an HRMSI layer.")
    if same_layer(lr, msi):
        return PairCheck(problem="Choose two different layers for the LRHSI and the HRMSI.")
    a, b = LayerShape(lr), LayerShape(msi)
    info = f"LRHSI: {a.bands} bands, {a.shape[1]}×{a.shape[2]} · HRMSI: {b.bands} bands, {b.shape[1]}×{b.shape[2]}"
    try:
        scale = api.check_pair(a, b)
    except CofusionError as exc:
        return PairCheck(info=info, problem=str(exc))
    info += f" · scale ×{scale}"
    note = ""
    if ref is not None:
        r = LayerShape(ref)
        info += f" · reference: {r.bands} bands, {r.shape[1]}×{r.shape[2]}"
        if r.bands != a.bands or r.spatial_shape != b.spatial_shape:
            note = (f"The reference '{r.name}' ({r.bands} bands, {r.shape[1]}×{r.shape[2]}) does not match "
                    f"the pair ({a.bands} bands at {b.shape[1]}×{b.shape[2]}).")
    return PairCheck(scale, info, note)


def _fits_reference(c, a, b) -> bool:
    """``c`` can be the reference of the pair (a, b): the LRHSI's band count at the HRMSI's size."""
    return (not same_layer(c, a) and not same_layer(c, b) and c.data.shape[0] == a.data.shape[0]
            and tuple(c.data.shape[1:]) == tuple(b.data.shape[1:]))


def guess_pair(layers: Sequence, current: Pair) -> Pair | None:
    """The most recently added (LRHSI, HRMSI) pair that ``check_pair`` accepts (fusion results are
    not candidates), with a reference of the LRHSI's band count at the HRMSI's size (the current one
    when it still fits, else the first such layer that is not a fusion result). Without such a pair
    and with the same layer chosen twice: the layers with the most and the fewest bands. None: keep
    the current choice."""
    inputs = [l for l in layers if "method" not in l.metadata]
    for a in reversed(inputs):
        for b in reversed(inputs):
            if same_layer(a, b):
                continue
            try:
                api.check_pair(LayerShape(a), LayerShape(b))
            except CofusionError:
                continue
            ref = current.reference
            if ref is None or not _fits_reference(ref, a, b):
                ref = next((c for c in inputs if _fits_reference(c, a, b)), None)
            return Pair(a, b, ref)
    if len(layers) >= 2 and same_layer(current.lr, current.msi):
        return Pair(max(layers, key=lambda l: l.data.shape[0]), min(layers, key=lambda l: l.data.shape[0]),
                    current.reference)
    return None
