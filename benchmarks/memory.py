"""Peak memory of ``napari-cofusion fuse``, file to file, on scenes larger than a CAVE scene.

Each run is a fresh ``napari-cofusion fuse`` process writing ENVI (block by block); the peak
resident set size is the child's ``ru_maxrss`` (``os.wait4``). The scenes are synthetic and never
exist in full at high resolution: K abundance maps (smooth random fields) and K endmember spectra
give the HRMSI through an SRF and the LRHSI through the blur and decimation of the maps, so the
benchmark itself stays small.

    .venv/bin/python benchmarks/memory.py                      # 1024², 2048² (31 bands), Chikusei-size (128)
    .venv/bin/python benchmarks/memory.py --sizes 1024 --methods glp-hs

A scene of 128 bands has no shipped CoFusion weights: the cofusion rows use a new (untrained) model
of that band count saved beside the scene, whose memory is that of trained weights.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from napari_cofusion.core import ops
from napari_cofusion.core.cube import Cube
from napari_cofusion.core.io import write_cube
from napari_cofusion.learn.models import CoFusion, CoFusionConfig
from napari_cofusion.learn.weights import make_card, save_weights

CHIKUSEI = (2516, 2332, 128)  # Chikusei is 2517 × 2335 × 128; cropped to a multiple of the scale


def synthetic_pair(H: int, W: int, C: int, c: int, scale: int, k: int = 4, seed: int = 0) -> tuple[Cube, Cube]:
    rng = np.random.default_rng(seed)
    maps = np.stack([gaussian_filter(rng.standard_normal((H, W)).astype(np.float32), 6 + 4 * i) for i in range(k)])
    maps -= maps.min(axis=(1, 2), keepdims=True)
    maps /= maps.sum(0, keepdims=True) + 1e-6  # abundances: positive, summing to one
    wl = np.linspace(400, 1000, C)
    ends = np.stack([0.2 + 0.6 * np.exp(-0.5 * ((wl - mu) / 120) ** 2) for mu in np.linspace(450, 950, k)])  # (k, C)
    srf = np.stack([np.exp(-0.5 * ((wl - mu) / 60) ** 2) for mu in np.linspace(480, 880, c)])
    srf /= srf.sum(1, keepdims=True)
    msi = np.einsum("mc,kc,khw->mhw", srf, ends, maps, optimize=True).astype(np.float32)
    kernel = ops.gaussian_kernel(3, 0.5)
    with torch.inference_mode():
        maps_lr = ops.degrade(torch.from_numpy(maps), kernel, scale, scale // 2).numpy()
    lr = np.einsum("kc,khw->chw", ends, maps_lr, optimize=True).astype(np.float32)
    return (Cube(np.clip(lr, 0, 1), wavelengths=wl, name="lr"), Cube(np.clip(msi, 0, 1), name="msi"))


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("napari-cofusion")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "napari_cofusion.cli"]


def measure(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one CLI run."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(_cli() + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"fuse failed ({proc.returncode}): {err or out}")
    return usage.ru_maxrss / 1024.0, wall


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="*", default=["1024", "2048", "chikusei"], help="square sides, or 'chikusei'")
    p.add_argument("--methods", nargs="*", default=["glp-hs", "cofusion"])
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--keep", default=None, help="folder to keep the scenes and results in (default: a temp folder)")
    a = p.parse_args(argv)
    root = Path(a.keep or tempfile.mkdtemp(prefix="cofusion-mem-"))
    root.mkdir(parents=True, exist_ok=True)
    budget = os.environ.get("NAPARI_COFUSION_MEMORY_MB", "default")
    print(f"threads {torch.get_num_threads()}, block budget {budget} MiB, scale x{a.scale}, folder {root}")
    print(f"{'scene':<22} {'method':<9} {'peak RSS (MiB)':>15} {'wall (s)':>9} {'output (MiB)':>13}")
    for size in a.sizes:
        H, W, C = CHIKUSEI if size == "chikusei" else (int(size), int(size), 31)
        c = 4 if C > 31 else 3
        d = root / f"{H}x{W}x{C}"
        d.mkdir(exist_ok=True)
        if not (d / "lr.hdr").exists():
            lr, msi = synthetic_pair(H, W, C, c, a.scale)
            write_cube(lr, d / "lr.hdr")
            write_cube(msi, d / "msi.hdr")
        for method in a.methods:
            extra = []
            if method == "cofusion":
                cfg = CoFusionConfig(hs_bands=C, ms_bands=c, scale=a.scale, base="glp-hs")
                wpath = d / "untrained.safetensors"
                if not wpath.exists():
                    model = CoFusion(cfg)
                    save_weights(model, wpath, make_card(model, training_mode="untrained (memory benchmark)"))
                extra = ["--weights", str(wpath), "--consistency", "on"]
            out = d / f"{method}.hdr"
            for q in (out, out.with_suffix(".img")):
                q.unlink(missing_ok=True)
            rss, wall = measure(["fuse", "--lr", str(d / "lr.hdr"), "--msi", str(d / "msi.hdr"), "--method", method,
                                 "--out", str(out), *extra])
            size_mb = out.with_suffix(".img").stat().st_size / 2**20
            print(f"{f'{H}x{W}x{C}':<22} {method:<9} {rss:>15.0f} {wall:>9.1f} {size_mb:>13.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
