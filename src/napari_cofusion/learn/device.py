"""Where the networks run: device choice, CPU threads, and the allocator setting that keeps
full-frame inference fast on this project's CPUs."""

from __future__ import annotations

import functools
import os

import torch

from napari_cofusion.core.errors import DeviceError

__all__ = ["resolve_device", "device_name", "available_devices", "set_threads", "keep_freed_memory"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/"cpu" → CPU; "cuda[:N]" only where CUDA is there (a clear error otherwise)."""
    try:
        dev = torch.device(device or "cpu")
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {str(device)!r}: use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA was asked for but torch sees no CUDA device on this machine: use the device 'cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"unsupported device {str(device)!r}: use cpu or cuda")
    return dev


def device_name(device: str | torch.device | None) -> str:
    """What a weights card records as the training device: the GPU's name on CUDA, else "cpu"."""
    dev = resolve_device(device)
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def available_devices() -> list[str]:
    """"cpu", then "cuda" where torch sees a CUDA device."""
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def set_threads(n: int | None = None) -> int:
    """Use every core for intra-op work (the default is often half of them in containers), and
    keep freed memory in the process (:func:`keep_freed_memory`)."""
    n = n or os.cpu_count() or 1
    torch.set_num_threads(n)
    keep_freed_memory()
    return n


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc's allocator to serve every allocation from the heap and keep what is freed.

    The network's feature maps at full resolution are tens of MB each; glibc gives such blocks
    their own ``mmap`` and returns them to the system when freed, so every new tensor pays
    page faults to zero fresh pages: on this project's CPUs that doubles the time of a full-frame
    forward. With mmap off and a high trim threshold the memory is reused instead (same numbers,
    higher peak memory). A no-op where the C library is not glibc. Process-wide, runs once;
    returns whether it took effect.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        return False
