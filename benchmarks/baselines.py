"""Classical baselines on the CAVE validation scenes under a named protocol.

    .venv/bin/python benchmarks/baselines.py [--protocol cave-x4] [--data ../shared/data]

Prints PSNR / SSIM / SAM / ERGAS per scene and method, and the mean over scenes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from napari_cofusion.core import metrics
from napari_cofusion.core.io import read_cube
from napari_cofusion.api import fuse
from napari_cofusion.degrade.simulate import simulate_pair

VALIDATION = ["oil_painting", "paints"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", default="cave-x4")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--methods", nargs="+", default=["bicubic", "glp-hs"])
    a = ap.parse_args()
    rows: dict[str, list[dict]] = {m: [] for m in a.methods}
    print("| scene | method | PSNR | SSIM | SAM (°) | ERGAS | time (s) |")
    print("|---|---|---|---|---|---|---|")
    for scene in VALIDATION:
        ref = read_cube(Path(a.data) / "cave" / f"{scene}_ms")
        pair = simulate_pair(ref, protocol=a.protocol)
        for m in a.methods:
            t0 = time.perf_counter()
            r = fuse(pair.lr, pair.msi, m)
            dt = time.perf_counter() - t0
            q = metrics.full_reference(r.cube.data, pair.reference.data, r.scale)
            rows[m].append(q)
            print(f"| {scene} | {m} | {q['psnr']:.2f} | {q['ssim']:.4f} | {q['sam']:.2f} | {q['ergas']:.2f} | {dt:.2f} |")
    for m, qs in rows.items():
        mean = {k: float(np.mean([q[k] for q in qs])) for k in qs[0]}
        print(f"| mean | {m} | {mean['psnr']:.2f} | {mean['ssim']:.4f} | {mean['sam']:.2f} | {mean['ergas']:.2f} | |")


if __name__ == "__main__":
    main()
