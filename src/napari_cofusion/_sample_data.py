"""npe2 sample-data adapters (thin: they only call ``samples``)."""

from __future__ import annotations

from .samples import cave_pair, houston_pair


def cave_pair_sample() -> list[tuple]:
    lr, msi, ref = cave_pair("cave-x4")
    return [ref.to_layer_data(), msi.to_layer_data(), lr.to_layer_data()]


def houston_pair_sample() -> list[tuple]:
    hs, rgb = houston_pair()
    return [rgb.to_layer_data(), hs.to_layer_data()]
