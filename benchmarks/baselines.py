"""Fusion methods on the CAVE validation scenes under a named protocol.

    .venv/bin/python benchmarks/baselines.py [--protocol cave-x4] [--data ../shared/data]
        [--methods bicubic glp-hs cofusion csakd hyfusion s3rnet] [--repeat 3]

Prints PSNR / SSIM / SAM / ERGAS and the whole ``fuse`` job's time per scene and method (with each
method's defaults: the weights ``fuse`` picks, its data-consistency default), then per method the
mean over scenes, the parameter count of the weights used, and the time as a ratio to glp-hs's.
With ``--repeat N`` every job runs once more first (loading the weights, warming caches) and the
time is the median of N runs. Nothing else should run on the machine while it measures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from napari_cofusion.api import fuse
from napari_cofusion.core import metrics
from napari_cofusion.core.io import read_cube
from napari_cofusion.degrade.simulate import simulate_pair
from napari_cofusion.learn.weights import shipped_weights_dir

VALIDATION = ["oil_painting", "paints"]


def _params(result) -> str:
    name = result.meta.get("weights")
    if not name:
        return "0"
    card = json.loads((shipped_weights_dir() / name).with_suffix(".json").read_text())
    return f"{card['n_params']:,}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", default="cave-x4")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--methods", nargs="+", default=["bicubic", "glp-hs"])
    ap.add_argument("--repeat", type=int, default=1, help="timed runs per job, after one warm-up when above 1")
    a = ap.parse_args()
    rows: dict[str, list[dict]] = {m: [] for m in a.methods}
    times: dict[str, list[float]] = {m: [] for m in a.methods}
    params: dict[str, str] = {}
    print("| scene | method | PSNR | SSIM | SAM (°) | ERGAS | time (s) |")
    print("|---|---|---|---|---|---|---|")
    for scene in VALIDATION:
        ref = read_cube(Path(a.data) / "cave" / f"{scene}_ms")
        pair = simulate_pair(ref, protocol=a.protocol)
        for m in a.methods:
            if a.repeat > 1:
                fuse(pair.lr, pair.msi, m)
            dts = []
            for _ in range(max(a.repeat, 1)):
                t0 = time.perf_counter()
                r = fuse(pair.lr, pair.msi, m)
                dts.append(time.perf_counter() - t0)
            dt = statistics.median(dts)
            q = metrics.full_reference(r.cube.data, pair.reference.data, r.scale)
            rows[m].append(q)
            times[m].append(dt)
            params[m] = _params(r)
            print(f"| {scene} | {m} | {q['psnr']:.2f} | {q['ssim']:.4f} | {q['sam']:.2f} | {q['ergas']:.2f} | {dt:.2f} |")
    print()
    ref_t = float(np.mean(times["glp-hs"])) if "glp-hs" in times else None
    print("| method | PSNR | SSIM | SAM (°) | ERGAS | parameters | time (s) | time / glp-hs |")
    print("|---|---|---|---|---|---|---|---|")
    for m, qs in rows.items():
        mean = {k: float(np.mean([q[k] for q in qs])) for k in qs[0]}
        t = float(np.mean(times[m]))
        ratio = f"{t / ref_t:.2f}" if ref_t else "—"
        print(f"| {m} | {mean['psnr']:.3f} | {mean['ssim']:.4f} | {mean['sam']:.3f} | {mean['ergas']:.3f} | "
              f"{params[m]} | {t:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
