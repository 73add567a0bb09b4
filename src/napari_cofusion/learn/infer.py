"""Inference: a model's forward on a whole frame, or on blocks of it.

Large scenes are cut into blocks by :mod:`napari_cofusion.fusion.blocks` (the one tiling
mechanism of the package: ``fuse`` uses it for every method); :func:`fuse_tensor` applies it to a
bare model for scripts and tests. Each block is run on its area grown by a margin and only its
interior is kept, so memory follows the block and the blocks agree with the whole frame once the
margin exceeds the network's effective receptive field.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Callable

import numpy as np
import torch

from napari_cofusion.fusion.blocks import ArraySink, plan_blocks, run_blocks

__all__ = ["forward", "fuse_tensor", "cpu_fast_path", "set_channels_last"]


@functools.lru_cache(maxsize=1)
def _bf16_native() -> bool:
    """Whether this CPU runs bf16 convolutions natively (AVX512-BF16 / AMX through oneDNN)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_fast_path(model: torch.nn.Module) -> dict[str, bool]:
    """What a CPU forward of ``model`` uses: its class's ``cpu_inference`` (bf16 autocast,
    channels_last; each adopted because it keeps the validation PSNR within 0.01 dB,
    benchmarks/precision.py), bf16 only where the CPU has native bf16, and nothing when
    ``NAPARI_COFUSION_PRECISION=float32``."""
    want = dict(getattr(model, "cpu_inference", {}) or {})
    if os.environ.get("NAPARI_COFUSION_PRECISION", "").lower() in ("float32", "fp32"):
        return {"bf16": False, "channels_last": False}
    return {"bf16": bool(want.get("bf16")) and _bf16_native(), "channels_last": bool(want.get("channels_last"))}


def set_channels_last(model: torch.nn.Module, on: bool) -> None:
    """Convolution weights (4-D parameters) in channels_last (or back), once per model."""
    if getattr(model, "_channels_last", False) == on:
        return
    fmt = torch.channels_last if on else torch.contiguous_format
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 4:
                p.data = p.data.contiguous(memory_format=fmt)
    model._channels_last = on


@torch.inference_mode()
def forward(model: torch.nn.Module, lr: torch.Tensor, msi: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
    """(C, h, w), (c, H, W) [, base (C, H, W)] → (C, H, W) float32 on the model's device, one
    forward; on the CPU with the model's fast path (:func:`cpu_fast_path`)."""
    dev = next(model.parameters()).device
    xs = [lr[None].to(dev), msi[None].to(dev), None if base is None else base[None].to(dev)]
    fast = cpu_fast_path(model) if dev.type == "cpu" else {"bf16": False, "channels_last": False}
    set_channels_last(model, fast["channels_last"])
    if fast["channels_last"]:
        xs = [None if x is None else x.contiguous(memory_format=torch.channels_last) for x in xs]
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if fast["bf16"] else contextlib.nullcontext()
    with ctx:
        out = model(*xs)[0]
    return out.float().contiguous()


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
