"""Block-wise work: any fusion step run on overlapping blocks of the HR grid, so that memory follows
the block and not the scene.

A block is an interior (the HR pixels it delivers) grown by a margin on every side that is not the
image border (the context its computation needs); its origin is a multiple of the scale, so that
it has an exact LR counterpart. Each block is computed on its extended area and only its interior
is kept: the blocks tile the scene without overlap in the output, and a pixel's value is that of a
whole-frame computation whenever the margin covers the step's reach (exactly for the classical
methods, whose reach is a few LR pixels; to ~1e-5 for the network with the default margin).

Results go to a *sink*: an array in memory (:class:`ArraySink`) or an ENVI file written block by
block (:class:`EnviSink`, in :mod:`napari_cofusion.core.io.envi`), so that a scene larger than the
memory can be fused file to file.

The block side comes from a memory budget (:func:`block_side`) that counts the bands: a step
declares the bytes it needs per HR pixel.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

import numpy as np

from napari_cofusion.core.errors import CubeError

__all__ = ["Block", "plan_blocks", "block_side", "memory_budget", "ArraySink", "Sink", "run_blocks", "DEFAULT_BUDGET_MB"]

#: working memory a fusion may use for its blocks (MiB), besides its inputs and output;
#: NAPARI_COFUSION_MEMORY_MB overrides it. 2.5 GiB keeps a CAVE scene (512², 31 bands) whole for
#: CoFusion, as before blocks existed, and a Chikusei-size scene under 4 GB (benchmarks/memory.py)
DEFAULT_BUDGET_MB = 2560


def memory_budget() -> int:
    """The block budget in bytes (``NAPARI_COFUSION_MEMORY_MB`` or :data:`DEFAULT_BUDGET_MB`)."""
    env = os.environ.get("NAPARI_COFUSION_MEMORY_MB")
    try:
        mb = float(env) if env else DEFAULT_BUDGET_MB
    except ValueError:
        raise CubeError(f"NAPARI_COFUSION_MEMORY_MB = {env!r} is not a number of MiB") from None
    if not mb > 0:
        raise CubeError(f"NAPARI_COFUSION_MEMORY_MB = {env!r} must be positive")
    return int(mb * 2**20)


@dataclass(frozen=True)
class Block:
    """Interior ``[y0, y1) × [x0, x1)`` and extended area ``[ey0, ey1) × [ex0, ex1)`` (HR pixels)."""

    y0: int
    y1: int
    x0: int
    x1: int
    ey0: int
    ey1: int
    ex0: int
    ex1: int

    def lr_slices(self, scale: int) -> tuple[slice, slice]:
        return slice(self.ey0 // scale, -(-self.ey1 // scale)), slice(self.ex0 // scale, -(-self.ex1 // scale))

    def hr_slices(self) -> tuple[slice, slice]:
        return slice(self.ey0, self.ey1), slice(self.ex0, self.ex1)

    def interior_in_extended(self) -> tuple[slice, slice]:
        return slice(self.y0 - self.ey0, self.y1 - self.ey0), slice(self.x0 - self.ex0, self.x1 - self.ex0)


def _align(scale: int, align: int | None = None) -> int:
    """The HR multiple of block origins and sides: lcm(scale, 8), or a method's own ``align``
    (itself made a multiple of the scale)."""
    return math.lcm(int(scale), 8) if align is None else math.lcm(int(scale), int(align))


def block_side(bytes_per_pixel: float, scale: int, margin: int, budget: int | None = None,
               align: int | None = None) -> int:
    """The largest block interior side (a multiple of lcm(scale, 8), or of ``align``) whose
    extended area fits the budget at ``bytes_per_pixel``; at least one alignment step."""
    budget = memory_budget() if budget is None else budget
    a = _align(scale, align)
    ext = math.sqrt(max(budget, 1) / max(bytes_per_pixel, 1.0))
    return max(a, int((ext - 2 * margin) // a) * a)


def plan_blocks(H: int, W: int, side: int, margin: int, scale: int, align: int | None = None) -> list[Block]:
    """Blocks of interior ``side`` (rounded down to a multiple of lcm(scale, 8)) covering H × W, each
    extended by ``margin`` (rounded up to a multiple of the scale) inside the image. With ``align``
    (HR pixels) sides and margins are multiples of it instead, so every extended block starts on
    that grid of the whole frame."""
    a = _align(scale, align)
    if isinstance(side, bool) or not isinstance(side, (int, np.integer)) or side < a:
        what = f"lcm(scale, 8) = {a}" if align is None else f"the method's alignment {a}"
        raise CubeError(f"block side {side!r} must be a whole number of at least {what} HR pixels")
    side = int(side) // a * a
    step = scale if align is None else a
    m = -(-int(margin) // step) * step
    blocks = []
    for y0 in range(0, H, side):
        for x0 in range(0, W, side):
            y1, x1 = min(y0 + side, H), min(x0 + side, W)
            blocks.append(Block(y0, y1, x0, x1, max(0, y0 - m), min(H, y1 + m), max(0, x0 - m), min(W, x1 + m)))
    return blocks


class Sink(Protocol):
    def write(self, block: Block, data: np.ndarray) -> None: ...


class ArraySink:
    """An in-memory (C, H, W) float32 result."""

    def __init__(self, bands: int, H: int, W: int) -> None:
        self.data = np.empty((bands, H, W), dtype=np.float32)

    def write(self, block: Block, data: np.ndarray) -> None:
        self.data[:, block.y0:block.y1, block.x0:block.x1] = data


def iter_extended(lr: np.ndarray, msi: np.ndarray, blocks: list[Block], scale: int
                  ) -> Iterator[tuple[Block, np.ndarray, np.ndarray]]:
    """Each block with its LR and HR input arrays (contiguous copies of the extended area)."""
    for b in blocks:
        ly, lx = b.lr_slices(scale)
        hy, hx = b.hr_slices()
        yield b, np.ascontiguousarray(lr[:, ly, lx]), np.ascontiguousarray(msi[:, hy, hx])


def run_blocks(step: Callable[[Block, np.ndarray, np.ndarray], np.ndarray], lr: np.ndarray, msi: np.ndarray,
               scale: int, blocks: list[Block], sink: Sink, progress: Callable[[int, int], Any] | None = None,
               interior: bool = False) -> None:
    """``step(block, lr_ext, msi_ext) -> (C, eh, ew)`` on every block (its interior only, (C, y1−y0,
    x1−x0), with ``interior``); the interiors go to ``sink``. ``progress(done, total)`` after each
    block (it may raise to stop)."""
    for i, (b, lr_b, ms_b) in enumerate(iter_extended(lr, msi, blocks, scale)):
        out = step(b, lr_b, ms_b)
        if not interior:
            iy, ix = b.interior_in_extended()
            out = out[:, iy, ix]
        sink.write(b, np.asarray(out, dtype=np.float32))
        del out, lr_b, ms_b
        if len(blocks) > 1:
            release_free_memory()
        if progress is not None:
            progress(i + 1, len(blocks))


def release_free_memory() -> None:
    """Give the memory freed by a block back to the system before the next one (glibc's
    ``malloc_trim``; the process otherwise keeps it, see ``learn.device.keep_freed_memory``), so
    that peak memory stays that of one block. A no-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
