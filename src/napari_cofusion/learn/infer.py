"""Inference: whole frame when it fits, otherwise overlapping tiles blended without seams.

Tiles are cut on the HR grid with origins that are multiples of the scale (so each HR tile has
an exact LR counterpart), overlap by ``overlap`` HR pixels, and are blended with a separable
weight that is zero in the 3/8 of the overlap next to a tile's inner edge and ramps linearly to
one across the middle quarter (image borders keep full weight): tiles agree with the whole
frame once 3/8 of the overlap exceeds the network's effective receptive field. Peak memory is bounded by the tile size, not the scene size.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch

from napari_cofusion.core.errors import CubeError

__all__ = ["fuse_tensor", "iter_tiles", "tile_starts", "auto_tile"]


def tile_starts(n: int, tile: int, overlap: int, align: int) -> list[int]:
    """Tile origins along one axis: multiples of ``align``, covering [0, n), stepping by tile − overlap."""
    if tile >= n:
        return [0]
    step = max(((tile - overlap) // align) * align, align)
    starts = list(range(0, n - tile, step))
    last = ((n - tile) // align) * align
    if not starts or starts[-1] != last:
        starts.append(last)
    if last + tile < n:  # n not a multiple of align: the last tile must still reach the edge
        starts.append(n - tile)
    return sorted(set(starts))


def _ramp(n: int, overlap: int, lo_edge: bool, hi_edge: bool) -> torch.Tensor:
    """Blending weight along one axis of a tile: 0 within ``3·overlap/8`` of an inner edge (where
    the tile's zero padding disturbs the features), then a linear ramp to 1 at ``5·overlap/8``.
    Where two tiles overlap by ``overlap`` the weights of the pair sum to 1 or more, never 0."""
    w = torch.ones(n, dtype=torch.float64)
    if overlap > 0:
        m = (3 * overlap) // 8
        d = torch.arange(n, dtype=torch.float64) + 0.5
        ramp = lambda dist: torch.clamp((dist - m) / max(overlap - 2 * m, 1), 0.0, 1.0)  # noqa: E731
        if not lo_edge:
            w = torch.minimum(w, ramp(d))
        if not hi_edge:
            w = torch.minimum(w, ramp(n - d))
    return w


def auto_tile(hs_bands: int, H: int, W: int, max_pixels: int = 1024 * 1024) -> int | None:
    """None (whole frame) when the scene has at most ``max_pixels`` HR pixels, else a tile side."""
    return None if H * W <= max_pixels else 256


def iter_tiles(H: int, W: int, tile: int, overlap: int, scale: int) -> Iterator[tuple[int, int, int, int]]:
    align = math.lcm(scale, 8) if scale else 8
    for y in tile_starts(H, tile, overlap, align):
        for x in tile_starts(W, tile, overlap, align):
            yield y, x, min(tile, H - y), min(tile, W - x)


@torch.inference_mode()
def fuse_tensor(
    model: torch.nn.Module,
    lr: torch.Tensor,
    msi: torch.Tensor,
    base: torch.Tensor | None = None,
    tile: int | None = None,
    overlap: int = 64,
    progress=None,
) -> torch.Tensor:
    """(C, h, w), (c, H, W) [, base (C, H, W)] → (C, H, W) on the model's device.

    ``tile=None`` runs the whole frame; otherwise HR tiles of side ``tile`` (a multiple of
    lcm(scale, 8)) overlapping by ``overlap``. ``progress(done, total)`` is called per tile.
    """
    dev = next(model.parameters()).device
    s = model.cfg.scale
    C = lr.shape[0]
    H, W = msi.shape[-2:]
    if tile is None or (tile >= H and tile >= W):
        out = model(lr[None].to(dev), msi[None].to(dev), None if base is None else base[None].to(dev))[0]
        if progress:
            progress(1, 1)
        return out
    align = math.lcm(s, 8)
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 2 * align:
        raise CubeError(f"tile = {tile!r}: tiles must be whole numbers of at least {2 * align} HR pixels at ×{s} "
                        f"(two steps of lcm(scale, 8) = {align})")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise CubeError(f"overlap = {overlap!r}: must be a whole number of HR pixels, 0 or more")
    tile = (tile // align) * align
    # neighbouring tiles must overlap by at least ``overlap`` (the blend's zero zones are then covered):
    # the step, a multiple of ``align``, must stay positive
    overlap = min((overlap // s) * s, tile // 2, tile - align)
    acc = torch.zeros(C, H, W, dtype=torch.float64)
    wsum = torch.zeros(1, H, W, dtype=torch.float64)
    tiles = list(iter_tiles(H, W, tile, overlap, s))
    for i, (y, x, th, tw) in enumerate(tiles):
        lr_t = lr[:, y // s:(y + th) // s, x // s:(x + tw) // s]
        ms_t = msi[:, y:y + th, x:x + tw]
        b_t = None if base is None else base[:, y:y + th, x:x + tw][None].to(dev)
        o = model(lr_t[None].to(dev), ms_t[None].to(dev), b_t)[0].double().cpu()
        wy = _ramp(th, overlap, y == 0, y + th >= H)
        wx = _ramp(tw, overlap, x == 0, x + tw >= W)
        wgt = (wy[:, None] * wx[None, :])[None]
        acc[:, y:y + th, x:x + tw] += o * wgt
        wsum[:, y:y + th, x:x + tw] += wgt
        if progress:
            progress(i + 1, len(tiles))
    return (acc / wsum).to(lr.dtype).to(dev)
