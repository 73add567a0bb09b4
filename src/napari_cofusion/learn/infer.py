"""Inference: a model's forward on a whole frame, or on blocks of it.

Large scenes are cut into blocks by :mod:`napari_cofusion.fusion.blocks` (the one tiling
mechanism of the package: ``fuse`` uses it for every method); :func:`fuse_tensor` applies it to a
bare model for scripts and tests. Each block is run on its area grown by a margin and only its
interior is kept, so memory follows the block and the blocks agree with the whole frame once the
margin exceeds the network's effective receptive field.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from napari_cofusion.fusion.blocks import ArraySink, plan_blocks, run_blocks

__all__ = ["forward", "fuse_tensor"]


@torch.inference_mode()
def forward(model: torch.nn.Module, lr: torch.Tensor, msi: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
    """(C, h, w), (c, H, W) [, base (C, H, W)] → (C, H, W) on the model's device, one forward."""
    dev = next(model.parameters()).device
    return model(lr[None].to(dev), msi[None].to(dev), None if base is None else base[None].to(dev))[0]


def fuse_tensor(
    model: torch.nn.Module,
    lr: torch.Tensor,
    msi: torch.Tensor,
    base: torch.Tensor | None = None,
    tile: int | None = None,
    overlap: int = 64,
    progress: Callable[[int, int], object] | None = None,
) -> torch.Tensor:
    """The model on the whole frame (``tile=None``) or on blocks of interior side ``tile`` with a
    margin of ``overlap // 2`` HR pixels; ``progress(done, total)`` after each block. Returns
    (C, H, W) on the CPU for blocks, on the model's device for the whole frame."""
    if tile is None:
        out = forward(model, lr, msi, base)
        if progress:
            progress(1, 1)
        return out
    s = model.cfg.scale
    H, W = msi.shape[-2:]
    blocks = plan_blocks(H, W, tile, max(int(overlap), 0) // 2, s)
    sink = ArraySink(lr.shape[0], H, W)
    base_np = None if base is None else base.cpu().numpy()

    def step(b, lr_b, ms_b):
        hy, hx = b.hr_slices()
        bb = None if base_np is None else torch.from_numpy(np.ascontiguousarray(base_np[:, hy, hx]))
        return forward(model, torch.from_numpy(lr_b), torch.from_numpy(ms_b), bb).float().cpu().numpy()

    run_blocks(step, lr.cpu().numpy(), msi.cpu().numpy(), s, blocks, sink, progress)
    return torch.from_numpy(sink.data).to(lr.dtype)
